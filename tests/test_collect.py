"""Collection: every loader and mapping, answer extraction, and bad input as dropped rows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from stages.collect import CollectConfig, SourceSpec
from tests.conftest import run_collect, write_jsonl

ROWS = [
    {"id": 1, "question": "What is $1+1$?", "solution": r"Add: $\boxed{2}$.", "extra": {"level": 1}},
    {"id": 2, "question": "What is $3 \\cdot 3$?", "solution": r"Multiply: $\boxed{9}$."},
    {"id": 3, "question": "Name the largest prime below 10.", "answer": 7.0},
]
FIELDS = {"problem": "question", "answer": "answer", "solution": "solution"}


def collect(tmp_path: Path, *sources: dict, **options) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    config = CollectConfig(sources=[SourceSpec.model_validate(s) for s in sources], **options)
    report = run_collect(config, tmp_path / "01-collect")
    kept = pl.read_parquet(tmp_path / "01-collect" / "kept") if report["rows_kept"] else pl.DataFrame()
    dropped = (
        pl.read_parquet(tmp_path / "01-collect" / "dropped") if report["rows_dropped"] else pl.DataFrame()
    )
    return report, kept, dropped


def as_files(tmp_path: Path) -> dict[str, Path]:
    """The same three rows as JSONL, JSON array, Parquet and CSV."""
    flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in ROWS]
    frame = pl.DataFrame(flat, schema_overrides={"answer": pl.Float64})
    frame.write_parquet(tmp_path / "rows.parquet")
    frame.write_csv(tmp_path / "rows.csv")
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    return {
        "jsonl": write_jsonl(tmp_path / "rows.jsonl", ROWS),
        "json": tmp_path / "rows.json",
        "parquet": tmp_path / "rows.parquet",
        "csv": tmp_path / "rows.csv",
    }


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_every_format_gives_the_same_problems(tmp_path, fmt):
    path = as_files(tmp_path)[fmt]
    report, kept, _ = collect(tmp_path, {"name": "toy", "path": str(path), "fields": FIELDS})
    assert report["rows_in"] == 3 and report["rows_kept"] == 3
    assert kept["problem"].to_list() == [r["question"] for r in ROWS]
    assert kept["answer"].to_list() == ["2", "9", "7"]  # extracted, extracted, 7.0 normalised
    assert kept["source"].unique().to_list() == ["toy"]
    meta = json.loads(kept["meta"][0])
    assert meta["id"] == 1 and "question" not in meta


def test_datasets_source_uses_the_same_path(tmp_path):
    path = as_files(tmp_path)["jsonl"]
    hub = {"dataset": "json", "data_files": str(path), "split": "train", "streaming": True}
    report, kept, _ = collect(tmp_path, {"name": "hub", "hf": hub, "fields": FIELDS})
    assert report["rows_kept"] == 3
    assert kept["answer"].to_list() == ["2", "9", "7"]


def test_nested_paths_reach_into_lists_and_structs(tmp_path):
    rows = [{"prompt": [{"from": "user", "value": "Which is larger, 2 or 3?"}], "gold": {"letter": "B"}}]
    path = write_jsonl(tmp_path / "nested.jsonl", rows)
    fields = {"problem": "prompt[0].value", "answer": "gold.letter"}
    _, kept, _ = collect(tmp_path, {"name": "n", "path": str(path), "fields": fields})
    pl.DataFrame(rows).write_parquet(tmp_path / "nested.parquet")
    _, kept_pq, _ = collect(
        tmp_path / "pq", {"name": "n", "path": str(tmp_path / "nested.parquet"), "fields": fields}
    )
    for frame in (kept, kept_pq):
        assert frame["problem"].to_list() == ["Which is larger, 2 or 3?"]
        assert frame["answer"].to_list() == ["B"]


def test_malformed_lines_become_dropped_rows(tmp_path):
    good = json.dumps({"question": "What is 2+2?", "answer": "4"})
    lines = [
        good,
        '{"question": "truncated',  # truncated JSON
        "",  # blank line
        json.dumps({"question": 17, "answer": "4"}),  # wrong type
        json.dumps({"answer": "4"}),  # no problem
        json.dumps({"question": "   ", "answer": "4"}),  # empty problem
        json.dumps(["a", "list"]),  # not an object
        json.dumps({"question": "x" * 5_000_000, "answer": "1"}),  # a 5 MB problem
        json.dumps({"question": "See ![fig](a.png). Find x.", "answer": "1"}),
        json.dumps({"question": "Read https://example.com/p then solve.", "answer": "1"}),
        json.dumps({"question": "What is 3+3?", "answer": ["6"]}),  # one-element list answer
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"question": "\xff\xfe"}\n')  # undecodable
    report, kept, dropped = collect(tmp_path, {"name": "bad", "path": str(path), "fields": FIELDS})
    assert report["rows_in"] == len(lines) + 1 == report["rows_kept"] + report["rows_dropped"]
    assert kept["answer"].to_list() == ["4", "6"]
    reasons = dict(zip(dropped["drop_reason"], dropped["drop_detail"], strict=True))
    assert set(reasons) == {
        "malformed_json",
        "blank_line",
        "problem_not_text",
        "missing_problem",
        "empty_problem",
        "not_an_object",
        "problem_too_long",
        "needs_image",
        "needs_url",
        "undecodable_line",
    }
    assert json.loads(reasons["problem_too_long"])["evidence"].startswith("5000000 characters")
    assert json.loads(reasons["needs_image"])["evidence"] == "![fig](a.png)"
    assert json.loads(reasons["malformed_json"])["row"] == 1


def test_empty_file_is_reported_not_crashed(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    report, _, _ = collect(tmp_path, {"name": "empty", "path": str(path), "fields": FIELDS})
    assert report["rows_in"] == 0
    assert "no rows" in report["details"]["warnings"][0]


def test_limit_and_integer_answers(tmp_path):
    rows = [{"problem": f"AIME problem {i}", "answer": f"{i:03d}"} for i in range(1, 6)]
    path = write_jsonl(tmp_path / "aime.jsonl", rows)
    spec = {"name": "aime", "path": str(path), "integer_answers": True, "limit": 3}
    report, kept, _ = collect(tmp_path, spec)
    assert report["rows_in"] == 3
    assert kept["answer"].to_list() == ["1", "2", "3"]


def test_bad_specs_fail_with_the_field_named():
    with pytest.raises(ValidationError, match="exactly one of"):
        SourceSpec(name="x")
    with pytest.raises(ValidationError, match="bad field path"):
        SourceSpec.model_validate({"name": "x", "path": "a.jsonl", "fields": {"problem": "a[x]"}})
    with pytest.raises(ValidationError, match="unknown preset"):
        SourceSpec.model_validate({"name": "x", "path": "a.jsonl", "preset": "nope"})
    with pytest.raises(ValidationError, match="format"):
        SourceSpec.model_validate({"name": "x", "path": "a.txt"})


def test_iter_records_reports_bad_rows_instead_of_skipping_them(tmp_path):
    from stages.collect.readers import iter_records

    path = tmp_path / "gen.jsonl"
    path.write_text('{"a": 1}\n\n[1]\n{"a": \n')
    rows = list(iter_records(path))
    assert [error for _, error, _ in rows] == [None, "blank_line", "not_an_object", "malformed_json"]
    assert rows[0][0] == {"a": 1}
