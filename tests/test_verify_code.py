"""The code verifier on the real test formats: canonical solutions pass, deliberately wrong ones fail.

A deterministic sample keeps this fast; benchmarks/verify.py --canonical runs every problem.
"""

from __future__ import annotations

import json

import pytest

from stages.verify.code_check import check_code, parse_tests, starter_fn_name, stdout_matches
from stages.verify.pool import WorkerPool
from tests.conftest import SHARED_DATA

BENCH = SHARED_DATA / "benchmarks"
pytestmark = pytest.mark.skipif(not BENCH.is_dir(), reason="../shared/data not present")
SAMPLE = 12  # problems per benchmark, spread over the file


def _rows(name: str) -> list[dict]:
    with (BENCH / name).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return rows[:: max(1, len(rows) // SAMPLE)][:SAMPLE]


def _canonical_items() -> list[tuple[str, dict]]:
    items = []
    for r in _rows("humaneval.jsonl"):
        tests = {"test": r["test"], "entry_point": r["entry_point"]}
        items.append((r["task_id"], {"code": r["prompt"] + r["canonical_solution"], "tests": tests}))
    for r in _rows("mbpp_test.jsonl"):
        items.append((f"mbpp/{r['task_id']}", {"code": r["code"], "tests": r["test"]}))
    for i, r in enumerate(_rows("deepcoder_test_leetcode.jsonl")):
        items.append((f"leetcode/{i}", {"code": r["solutions"], "tests": json.dumps(r["tests"])}))
    return items


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as p:
        yield p


def test_canonical_solutions_pass(pool: WorkerPool) -> None:
    items = _canonical_items()
    results = pool.map(check_code, [item for _, item in items], 120)
    failed = {name: r for (name, _), r in zip(items, results, strict=True) if not r["correct"]}
    assert failed == {}
    assert all(r["isolation"] for r in results)


def test_wrong_solutions_fail(pool: WorkerPool) -> None:
    items = []
    for _, item in _canonical_items():
        # Same program, wrong result: every function/method now returns None.
        broken = item["code"].replace("return ", "return None and ")
        items.append({**item, "code": broken})
    results = pool.map(check_code, items, 120)
    assert not any(r["correct"] for r in results)


CODEFORCES_MINMAX = "t = int(input())\nfor _ in range(t):\n    x, y = map(int, input().split())\n    print(min(x, y), max(x, y))\n"
LCB_SECOND_LARGEST = (
    "n = int(input())\na = list(map(int, input().split()))\nprint(a.index(sorted(a)[-2]) + 1)\n"
)
CONTESTS_ASC_DESC = (
    "n, m = map(int, input().split())\n"
    "books = [input() for _ in range(n)]\n"
    "key = lambda i: [ord(c) if j % 2 == 0 else -ord(c) for j, c in enumerate(books[i])]\n"
    "print(*[i + 1 for i in sorted(range(n), key=key)])\n"
)
LCB_FUNCTIONAL = """
class Solution:
    def shortestDistanceAfterQueries(self, n: int, queries: List[List[int]]) -> List[int]:
        graph = [[i + 1] for i in range(n - 1)] + [[]]
        out = []
        for u, v in queries:
            graph[u].append(v)
            dist, frontier = {0: 0}, [0]
            while frontier:
                nxt = []
                for x in frontier:
                    for y in graph[x]:
                        if y not in dist:
                            dist[y] = dist[x] + 1
                            nxt.append(y)
                frontier = nxt
            out.append(dist[n - 1])
        return out
"""


def _first(name: str, pred=lambda r: True) -> dict:
    with (BENCH / name).open(encoding="utf-8") as f:
        return next(r for r in map(json.loads, f) if pred(r))


@pytest.mark.parametrize(
    ("file", "code", "pred"),
    [
        ("deepcoder_test_codeforces.jsonl", CODEFORCES_MINMAX, lambda r: True),
        ("deepcoder_test_livecodebench.jsonl", LCB_SECOND_LARGEST, lambda r: True),
        ("deepcoder_test_code_contests.jsonl", CONTESTS_ASC_DESC, lambda r: True),
        (
            "deepcoder_test_livecodebench.jsonl",
            LCB_FUNCTIONAL,
            lambda r: r["tests"][0]["testtype"] == "functional",
        ),
    ],
)
def test_stdio_and_functional_formats(file: str, code: str, pred) -> None:
    row = _first(file, pred)
    fn_name = starter_fn_name(row.get("starter_code"))
    good = check_code({"code": code, "tests": json.dumps(row["tests"]), "fn_name": fn_name})
    assert good["correct"], good
    assert good["passed"] == good["total"] == len(parse_tests(row["tests"], fn_name).cases)
    wrong = code.replace("min(x, y), max(x, y)", "x, y").replace("[-2]", "[-1]").replace("i + 1 for", "i for")
    wrong = wrong.replace("out.append(dist[n - 1])", "out.append(dist[n - 1] + 1)")
    bad = check_code({"code": wrong, "tests": json.dumps(row["tests"]), "fn_name": fn_name})
    assert not bad["correct"]
    assert bad["first_failure"]["case"] == 0


def test_runtime_error_and_missing_program_are_verdicts() -> None:
    tests = [{"input": "1\n", "output": "1\n"}]
    crash = check_code({"code": "raise SystemExit(3)", "tests": tests})
    assert (crash["correct"], crash["status"]) == (False, "error")
    assert check_code({"code": None, "tests": tests})["status"] == "no_code"
    assert check_code({"code": "print(1)", "tests": {"weird": 1}})["status"] == "bad_tests"


@pytest.mark.parametrize(
    ("got", "want", "same"),
    [
        ("1 2 \n3\n\n", "1 2\n3", True),
        ("0.3333333\n", "0.33333333", True),
        ("1 2", "1 3", False),
        ("1\r\n2\r\n", "1\n2\n", True),
        ("1", "", False),
    ],
)
def test_stdout_comparison(got: str, want: str, same: bool) -> None:
    assert stdout_matches(got, want) is same


def test_cli_verifies_code_rows_without_a_gold_field(tmp_path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    rows = [
        {"prompt": r["prompt"], "test": r["test"], "response": f"```python\n{r['code']}\n```"}
        for r in _rows("mbpp_test.jsonl")[:3]
    ]
    rows[2]["response"] = "```python\ndef nothing():\n    return None\n```"
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    args = ["verify", str(path), "--out", str(out), "--problem-field", "prompt", "--tests-field", "test"]
    result = CliRunner().invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["details"]["verifiers"] == {"code": 3}
    assert report["details"]["accuracy_by_source"]["code"]["correct"] == 2
