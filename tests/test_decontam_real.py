"""The audit on real data: AIME training problems that MATH test reuses, and MBPP's test split inside
the full MBPP file. Expected pairs are recomputed here independently of the detector (exact text
after lower-casing and collapsing whitespace, the data README's definition: 20 / 3 / 503), and every
one must be among the audit's hits with the exact benchmark item id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli_decontam import audit
from stages.decontam import DecontamConfig


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _exact_pairs(train: list[dict], train_field: str, bench: list[dict], bench_field: str, bench_id) -> set:
    by_text: dict[str, list[str]] = {}
    for i, r in enumerate(bench):
        by_text.setdefault(_key(r[bench_field]), []).append(str(bench_id(i, r)))
    return {(row, bid) for row, r in enumerate(train) for bid in by_text.get(_key(r[train_field]), [])}


@pytest.fixture(scope="module")
def aime_audit(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("aime")
    config = DecontamConfig(
        benchmarks=["math_test", "math500", "aime24", "aime25", "amc23", "amc22_23"],
        benchmark_dir=shared_data / "benchmarks",
    )
    return audit([shared_data / "sources" / "deepscaler_train_aime.jsonl"], out, config)


def _hits(report: dict, benchmark: str) -> set:
    return {(h["row"], h["benchmark_id"]) for h in report["details"]["hits"] if h["benchmark"] == benchmark}


def test_aime_training_set_contains_math_test_problems(aime_audit, shared_data):
    train = _records(shared_data / "sources" / "deepscaler_train_aime.jsonl")
    math_test = _records(shared_data / "benchmarks" / "math_test_5000.jsonl")
    math500 = _records(shared_data / "benchmarks" / "math500.jsonl")
    exact_test = _exact_pairs(train, "problem", math_test, "problem", lambda i, r: r["idx"])
    exact_500 = _exact_pairs(train, "problem", math500, "problem", lambda i, r: r["unique_id"])
    assert (len(exact_test), len(exact_500)) == (20, 3)  # the README's hand count, recomputed
    assert aime_audit["rows_in"] == len(train)
    assert exact_test <= _hits(aime_audit, "math_test")
    assert exact_500 <= _hits(aime_audit, "math500")
    # near copies (reformatted LaTeX, another final question) come on top of the exact ones
    found = aime_audit["details"]["benchmarks"]
    assert found["math_test"]["rows_removed"] > 20 and found["math500"]["items_found"] > 3
    # AIME 1983-2023 cannot contain AIME 2024/2025 or AMC 2022/2023 problems: no false positives there
    assert all(found[b]["rows_removed"] == 0 for b in ("aime24", "aime25", "amc23", "amc22_23"))
    print(
        f"\nAIME train: {found['math_test']['rows_removed']} rows vs MATH test, "
        f"{found['math500']['rows_removed']} vs MATH-500; false-positive rate vs AIME24/25+AMC22/23: 0/{len(train)}"
    )


def test_mbpp_full_contains_the_whole_test_split(shared_data, tmp_path):
    config = DecontamConfig(benchmarks=["mbpp", "humaneval"], benchmark_dir=shared_data / "benchmarks")
    report = audit([shared_data / "sources" / "mbpp_full.jsonl"], tmp_path, config, field="problem,text")
    train = _records(shared_data / "sources" / "mbpp_full.jsonl")
    bench = _records(shared_data / "benchmarks" / "mbpp_test.jsonl")
    exact = _exact_pairs(train, "text", bench, "prompt", lambda i, r: r["task_id"])
    assert len({row for row, _ in exact}) == 503  # rows; 505 (row, task) pairs: two test texts repeat
    hits = _hits(report, "mbpp")
    assert exact <= hits
    # every test task (11-510) is found under its own task_id
    same_id = {int(bid) for row, bid in hits if train[row]["task_id"] == int(bid)}
    assert same_id == set(range(11, 511))
    assert report["details"]["benchmarks"]["mbpp"]["items_found"] == 500
    flagged = (tmp_path / "flagged.jsonl").read_text().split("\n")
    assert len([line for line in flagged if line]) == report["rows_dropped"]
    assert "Benchmark contamination" in (tmp_path / "report.html").read_text()


def test_benchmark_selection_does_not_change_the_decisions(shared_data, tmp_path):
    """MATH train audited against MATH-500 alone and against every benchmark flags the same MATH-500
    rows: boilerplate statistics come from the whole registry. Before, MATH-500 alone flagged 21 rows
    (13 of them different problems: RADII vs ELLIPSE, spherical vs cylindrical coordinates, another
    cyclic sum) against 9 with every benchmark."""
    source = [shared_data / "sources" / "deepscaler_train_math.jsonl"]
    bench_dir = shared_data / "benchmarks"
    alone = audit(source, tmp_path / "alone", DecontamConfig(benchmarks=["math500"], benchmark_dir=bench_dir))
    every = audit(source, tmp_path / "all", DecontamConfig(benchmark_dir=bench_dir))
    assert _hits(alone, "math500") == _hits(every, "math500")
    assert len(_hits(every, "math500")) == 9
    flagged_rows = {row for row, _ in _hits(alone, "math500")}
    assert not flagged_rows & {1773, 7020, 3392}  # the three different problems named above
    assert list(alone["details"]["benchmarks"]) == ["math500"]
    stats = alone["details"]["ngram_index"]["statistics"]
    assert stats == every["details"]["ngram_index"]["statistics"] and not stats["missing"]
    assert len(stats["benchmarks"]) == 16
