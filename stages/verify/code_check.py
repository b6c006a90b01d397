"""Code answer checking: run a candidate program against a problem's tests in the sandbox.

Three test shapes cover the data here (see docs/verification.md for the exact JSON accepted):
- stdio: input/output pairs (DeepCoder Codeforces, CodeContests, LiveCodeBench `stdin` tests);
- call: JSON arguments for a method of `Solution` (LiveCodeBench `functional` tests);
- program: test code run after the candidate (MBPP assert lists, HumanEval `check(candidate)`,
  DeepCoder LeetCode `check(Solution().f)`): passes when it exits cleanly.
`check_code` is a pure function of plain values so it runs in a worker process.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from stages.verify.sandbox import Limits, run_python

# What LeetCode-style harnesses provide: typing names, common stdlib, ListNode/TreeNode helpers.
PRELUDE = """\
import sys, math, collections, heapq, bisect, itertools, functools, re, string, random, operator
from typing import *
from collections import *
from itertools import *
from functools import *
from heapq import *
from bisect import *
from math import inf, nan, gcd, lcm, comb, perm, factorial, sqrt, isqrt, log, log2, log10, ceil, floor
from string import ascii_letters, ascii_lowercase, ascii_uppercase, digits
sys.setrecursionlimit(1 << 20)


class ListNode:
    def __init__(self, val=0, next=None):
        self.val, self.next = val, next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val, self.left, self.right = val, left, right


def list_node(values):
    head = tail = ListNode()
    for v in values:
        tail.next = ListNode(v)
        tail = tail.next
    return head.next


def is_same_list(a, b):
    while a and b:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None


def tree_node(values):
    if not values or values[0] is None:
        return None
    nodes = [None if v is None else TreeNode(v) for v in values]
    kids = nodes[::-1]
    root = kids.pop()
    for node in nodes:
        if node:
            if kids:
                node.left = kids.pop()
            if kids:
                node.right = kids.pop()
    return root


def is_same_tree(a, b):
    if not a or not b:
        return a is b
    return a.val == b.val and is_same_tree(a.left, b.left) and is_same_tree(a.right, b.right)

"""

_CALL_RUNNER = """
import json as _json
_fn = getattr(Solution(), {fn!r}) if "Solution" in globals() else globals()[{fn!r}]
_args = [_json.loads(line) for line in {args!r}.split("\\n") if line.strip()]
print({marker!r} + _json.dumps(_fn(*_args)))
"""


@dataclass(frozen=True)
class TestSpec:
    """A problem's tests in one of three shapes (see module docstring)."""

    kind: Literal["stdio", "call", "program"]
    cases: list[tuple[str, str]] = field(default_factory=list)  # (input, expected output)
    program: str = ""  # the test code, for kind == "program"
    fn_name: str | None = None  # for kind == "call"
    n_asserts: int = 0  # test cases inside a program, for throughput and reports


def _count_asserts(code: str) -> int:
    return max(1, len(re.findall(r"^\s*assert\b", code, re.MULTILINE)))


def parse_tests(tests: Any, fn_name: str | None = None) -> TestSpec:
    """Read the test shapes of the data here (JSON text or already decoded). ValueError if unknown."""
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError:
            return TestSpec("program", program=tests, n_asserts=_count_asserts(tests))
    if isinstance(tests, dict):
        fn_name = tests.get("fn_name") or fn_name
        if "functional" in tests:
            return TestSpec(
                "program", program=tests["functional"], n_asserts=_count_asserts(tests["functional"])
            )
        if "test" in tests and "entry_point" in tests:  # HumanEval
            program = f"{tests['test']}\n\ncheck({tests['entry_point']})\n"
            return TestSpec("program", program=program, n_asserts=_count_asserts(program))
        if "inputs" in tests and "outputs" in tests:  # CodeContests / APPS / TACO
            cases = list(zip(map(str, tests["inputs"]), map(str, tests["outputs"]), strict=True))
            return TestSpec("call" if fn_name else "stdio", cases, fn_name=fn_name)
        if "tests" in tests:
            return parse_tests(tests["tests"], fn_name)
    if isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests):  # MBPP asserts
        program = "\n".join(tests) + "\n"
        return TestSpec("program", program=program, n_asserts=len(tests))
    if isinstance(tests, list) and tests and all(isinstance(t, dict) and "input" in t for t in tests):
        cases = [(str(t["input"]), str(t["output"])) for t in tests]
        functional = any(t.get("testtype") == "functional" for t in tests)
        if functional and not fn_name:
            raise ValueError("functional tests need a function name (fn_name or starter code)")
        return TestSpec("call" if functional else "stdio", cases, fn_name=fn_name)
    raise ValueError(f"unknown test format: {str(tests)[:120]}")


def starter_fn_name(starter_code: str | None) -> str | None:
    """The method a LiveCodeBench starter (`class Solution: def f(self, ...)`) asks for."""
    found = re.findall(r"def\s+(\w+)\s*\(\s*self", starter_code or "")
    return found[0] if found else None


def _tokens_equal(got: str, want: str, rel_tol: float) -> bool:
    """Same whitespace-separated tokens; numbers may differ by `rel_tol` (floats printed differently)."""
    a, b = got.split(), want.split()
    if a == b:
        return True
    if len(a) != len(b) or rel_tol <= 0:
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        try:
            if not math.isclose(float(x), float(y), rel_tol=rel_tol, abs_tol=rel_tol):
                return False
        except ValueError:
            return False
    return True


def stdout_matches(got: str, want: str, rel_tol: float = 1e-6) -> bool:
    """Line by line, ignoring trailing whitespace and trailing blank lines (and `\\r`)."""
    lines_got = [line.rstrip() for line in got.replace("\r\n", "\n").rstrip().split("\n")]
    lines_want = [line.rstrip() for line in want.replace("\r\n", "\n").rstrip().split("\n")]
    if lines_got == lines_want:
        return True
    return _tokens_equal(got, want, rel_tol)


def _json_equal(got: Any, want: Any) -> bool:
    if isinstance(got, float) or isinstance(want, float):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_json_equal(a, b) for a, b in zip(got, want, strict=True))
    return got == want


def _run_case(code: str, spec: TestSpec, case: tuple[str, str], limits: Limits) -> tuple[bool, dict]:
    stdin, want = case
    if spec.kind == "stdio":
        result = run_python(code, stdin, limits)
        ok = result.status == "ok" and stdout_matches(result.stdout, want)
        return ok, {"status": result.status, "got": result.stdout[-300:], "isolation": result.isolation}
    marker = f"@@result-{secrets.token_hex(8)}@@"
    source = PRELUDE + code + _CALL_RUNNER.format(fn=spec.fn_name, args=stdin, marker=marker)
    result = run_python(source, "", limits)
    lines = [line for line in result.stdout.split("\n") if line.startswith(marker)]
    got = json.loads(lines[-1][len(marker) :]) if result.status == "ok" and lines else None
    ok = bool(lines) and _json_equal(got, json.loads(want))
    return ok, {"status": result.status, "got": str(got)[:300], "isolation": result.isolation}


def check_code(item: dict[str, Any]) -> dict[str, Any]:
    """Run `item["code"]` against `item["tests"]`; {correct, passed, total, status, isolation, ...}.

    item: code, tests (any shape `parse_tests` reads), fn_name (optional), limits (dict of `Limits`
    fields), stop_on_first_failure (bool). A missing program or unreadable tests is a verdict, not an error.
    """
    code = item.get("code")
    limits = Limits(**item.get("limits", {}))
    try:
        spec = parse_tests(item["tests"], item.get("fn_name"))
    except (ValueError, TypeError) as exc:
        return {"correct": False, "status": "bad_tests", "error": str(exc), "passed": 0, "total": 0}
    if not code or not code.strip():
        return {"correct": False, "status": "no_code", "error": None, "passed": 0, "total": len(spec.cases)}
    if spec.kind == "program":
        result = run_python(PRELUDE + code + "\n\n" + spec.program, "", limits)
        ok = result.status == "ok"
        return {
            "correct": ok,
            "status": result.status,
            "error": None,
            "passed": spec.n_asserts if ok else 0,
            "total": spec.n_asserts,
            "isolation": result.isolation,
            "stderr": "" if ok else result.stderr[-500:],
        }
    passed, first_failure, isolation = 0, None, None
    for index, case in enumerate(spec.cases):
        ok, detail = _run_case(code, spec, case, limits)
        isolation = detail.pop("isolation")
        if ok:
            passed += 1
            continue
        first_failure = first_failure or {
            "case": index,
            "input": case[0][:300],
            "expected": case[1][:300],
            **detail,
        }
        if item.get("stop_on_first_failure", True):
            break
    return {
        "correct": passed == len(spec.cases) and passed > 0,
        "status": "ok" if first_failure is None else first_failure["status"],
        "error": None,
        "passed": passed,
        "total": len(spec.cases),
        "isolation": isolation,
        "first_failure": first_failure,
    }
