"""Exact dedup: normalisation, keep policy, evidence and merged provenance."""

from __future__ import annotations

import json

import polars as pl

from stages.collect import CollectConfig, SourceSpec
from stages.dedup.exact import ExactDedupConfig
from stages.registry import run_stage
from tests.conftest import write_jsonl


def test_variants_collapse_and_the_best_row_survives(tmp_path):
    a = [
        {"problem": r"Compute $\frac {1} {2} + \frac{1}{3}$.", "answer": None},
        {"problem": "What is 2+2?", "answer": "4"},
    ]
    b = [
        {"problem": r"compute  $\frac{1}{2}+\frac{1}{3}$.", "answer": "5/6", "solution": r"\boxed{5/6}"},
        {"problem": "Ｗｈａｔ is 2+2?", "answer": "4"},  # full-width letters
        {"problem": r"Compute $\frac{1}{2} + \frac{1}{4}$.", "answer": "3/4"},  # different problem
    ]
    sources = [
        SourceSpec(name="a", path=write_jsonl(tmp_path / "a.jsonl", a)),
        SourceSpec(name="b", path=write_jsonl(tmp_path / "b.jsonl", b)),
    ]
    run_stage("collect", None, CollectConfig(sources=sources), tmp_path / "01-collect")
    report = run_stage("exact_dedup", tmp_path / "01-collect" / "kept", ExactDedupConfig(), tmp_path / "02")
    assert (report.rows_in, report.rows_kept, report.rows_dropped) == (5, 3, 2)

    kept = pl.read_parquet(tmp_path / "02" / "kept")
    half = kept.filter(pl.col("problem").str.contains("1}{3}", literal=True)).row(0, named=True)
    assert half["source"] == "b", "the row with an answer and a solution wins over an earlier bare one"
    assert half["sources"] == ["b", "a"], "survivor first, then the rows it replaced"
    four = kept.filter(pl.col("answer") == "4").row(0, named=True)
    assert four["source"] == "a", "on a tie the earlier row wins"

    dropped = pl.read_parquet(tmp_path / "02" / "dropped")
    details = {r["source"]: json.loads(r["drop_detail"]) for r in dropped.iter_rows(named=True)}
    assert details["a"] == {
        "duplicate_of": half["uid"],
        "method": "exact",
        "similarity": 1.0,
        "kept_source": "b",
    }
    assert details["b"]["duplicate_of"] == four["uid"]
    assert report.details.groups_with_duplicates == 2
