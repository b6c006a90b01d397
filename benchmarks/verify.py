"""Verification throughput and canonical-solution pass rates.

    .venv/bin/python benchmarks/verify.py            # math 1 vs 2 workers, code on every canonical solution

Math: every (gold, extracted answer) pair of the labelled generations in ../shared/data/generations,
repeated to about 2,600 checks, timed with 1 worker then 2 workers in the same run (pools warmed up
first). Code: the canonical solutions of HumanEval, MBPP (test) and DeepCoder LeetCode (test) run
against their tests in the sandbox with 2 workers; prints pass rates, failures and test cases/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.verify.code_check import check_code, parse_tests  # noqa: E402
from stages.verify.extract import final_answer, split_response  # noqa: E402
from stages.verify.pool import Failure, WorkerPool  # noqa: E402
from stages.verify.sandbox import isolation  # noqa: E402
from stages.verify.stage import _math_item  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def math_items(repeat: int) -> list[tuple]:
    items = []
    for name in sorted((DATA / "generations").glob("*.jsonl")):
        for row in _jsonl(name):
            for response in row["code"]:
                answer, _ = final_answer(split_response(response).answer)
                items.append((row["gt"], answer, "auto", 5))
    return items * repeat


def bench_math(repeat: int) -> None:
    items = math_items(repeat)
    for workers in (1, 2):
        with WorkerPool(workers, chunk_size=16) as pool:
            pool.map(_math_item, items[:64], 60)  # start the workers and import math-verify
            start = time.perf_counter()
            results = pool.map(_math_item, items, 60)
            seconds = time.perf_counter() - start
        methods = Counter(r["method"] for r in results if not isinstance(r, Failure))
        print(
            f"math  workers={workers}: {len(items)} checks in {seconds:.2f}s = {len(items) / seconds:,.0f}/s  {dict(methods)}"
        )


def code_items() -> list[tuple[str, dict]]:
    items = []
    for r in _jsonl(DATA / "benchmarks" / "humaneval.jsonl"):
        tests = {"test": r["test"], "entry_point": r["entry_point"]}
        items.append(
            ("humaneval", r["task_id"], {"code": r["prompt"] + r["canonical_solution"], "tests": tests})
        )
    for r in _jsonl(DATA / "benchmarks" / "mbpp_test.jsonl"):
        items.append(("mbpp_test", r["task_id"], {"code": r["code"], "tests": r["test"]}))
    for i, r in enumerate(_jsonl(DATA / "benchmarks" / "deepcoder_test_leetcode.jsonl")):
        items.append(("deepcoder_leetcode", i, {"code": r["solutions"], "tests": r["tests"]}))
    return items


def bench_code(workers: int) -> None:
    items = code_items()
    with WorkerPool(workers, chunk_size=2) as pool:
        pool.map(check_code, [items[0][2]] * workers, 120)
        start = time.perf_counter()
        results = pool.map(check_code, [it for _, _, it in items], 300)
        seconds = time.perf_counter() - start
    per_set: dict[str, Counter] = {}
    cases = 0
    for (name, task, item), res in zip(items, results, strict=True):
        counts = per_set.setdefault(name, Counter())
        counts["problems"] += 1
        cases += parse_tests(item["tests"]).n_asserts
        if not isinstance(res, Failure) and res["correct"]:
            counts["passed"] += 1
        else:
            print(
                f"  FAIL {name} {task}: {res if isinstance(res, Failure) else (res['status'], res.get('stderr', '')[-300:])}"
            )
    for name, c in per_set.items():
        print(
            f"code  {name}: {c['passed']}/{c['problems']} canonical solutions pass ({c['passed'] / c['problems']:.1%})"
        )
    print(
        f"code  workers={workers}: {len(items)} programs, {cases} test cases in {seconds:.1f}s = "
        f"{cases / seconds:,.0f} test cases/s, {len(items) / seconds:.1f} programs/s; isolation {isolation()[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeat the math items this many times")
    parser.add_argument("--code-workers", type=int, default=2)
    parser.add_argument("--skip-code", action="store_true")
    args = parser.parse_args()
    bench_math(args.repeat)
    if not args.skip_code:
        bench_code(args.code_workers)


if __name__ == "__main__":
    main()
