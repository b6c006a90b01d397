"""The vectorised JSONL reader: the same rows as the per-record path on every real file, and bad lines
that fall back to the per-line parser alone, with their own reason and line number."""

from __future__ import annotations

import codecs
import itertools
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from stages.collect import Collect, CollectConfig, SourceSpec, jsonl
from stages.collect.fields import parse_path
from stages.collect.mapping import record_frames
from stages.collect.readers import read_source
from stages.collect.spec import presets
from tests.conftest import line_count, run_collect

TEXT = ["row", "problem", "answer", "solution", "domain", "error"]  # compared as they are
JSON = ["tests", "meta"]  # compared as JSON values (tests may also be plain text, e.g. HumanEval's)


def without_nulls(value: Any) -> Any:
    """JSON with null-valued keys left out: Arrow gives every row of a frame all of its keys."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def canonical(text: str | None) -> str | None:
    """A JSON text without its null-valued keys, keys sorted; other text as it is."""
    try:
        return json.dumps(without_nulls(json.loads(text)), sort_keys=True) if text else text
    except json.JSONDecodeError:
        return text


def comparable(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frame = pl.concat(frames)
    return frame.select(TEXT).with_columns(pl.Series(c, list(map(canonical, frame[c]))) for c in JSON)


def per_record(spec: SourceSpec) -> pl.DataFrame:
    """The reference: every line through Python's json and the per-record mapping."""
    assert spec.path is not None
    paths = {t: parse_path(p) for t, p in spec.fields.paths().items()}
    return comparable(list(record_frames(jsonl.jsonl_records(spec.path), paths, 10_000)))


def no_per_line_parsing(monkeypatch) -> None:
    def forbidden(raw: bytes):
        raise AssertionError(f"parsed line by line: {raw[:80]!r}")

    monkeypatch.setattr(jsonl, "parse_line", forbidden)


def shared_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "sources").glob("*.jsonl")) + sorted(
        (shared_data / "benchmarks").glob("*.jsonl")
    )


def test_every_real_file_gives_the_per_record_rows_without_per_line_parsing(shared_data, monkeypatch):
    files = shared_files(shared_data)
    assert len(files) == 25 and {p.stem for p in files} <= set(presets())
    specs = [SourceSpec(name=p.stem, path=p, preset=p.stem) for p in files]
    expected = [per_record(spec) for spec in specs]
    no_per_line_parsing(monkeypatch)
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 1 << 20)  # several chunks per file, lines cut at chunk ends
    for spec, reference in zip(specs, expected, strict=True):
        got = comparable(list(read_source(spec, 10_000)))
        assert got.height == line_count(spec.path)
        assert got.equals(reference), f"{spec.name}: vectorised rows differ from per-record rows"


def test_nested_paths_and_typed_fields_on_the_vectorised_path(tmp_path, monkeypatch):
    rows = [
        {"prompt": [{"value": f"Which is larger, {i} or {i + 1}?"}], "gold": {"n": i + 1}, "ok": i % 2 == 0}
        for i in range(50)
    ]
    path = tmp_path / "nested.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = SourceSpec(
        name="n", path=path, fields={"problem": "prompt[0].value", "answer": "gold.n", "solution": "ok"}
    )
    expected = per_record(spec)
    no_per_line_parsing(monkeypatch)
    got = comparable(list(read_source(spec, 10_000)))
    assert got.equals(expected)
    assert got["answer"][3] == "4" and got["solution"][:2].to_list() == ["True", "False"]


GOOD = {"question": "What is 2+2?", "answer": 4, "tests": [{"in": "1", "out": "2"}]}
BAD = {
    "truncated": b'{"question": "What is',
    "blank": b"",
    "whitespace": b"   \t",
    "null": b"null",
    "array": b'["What is 2+2?"]',
    "problem_is_a_number": b'{"question": 17, "answer": 4}',
    "answer_changes_type": b'{"question": "What is 5+5?", "answer": "ten"}',
    "duplicate_key": b'{"question": "first", "question": "What is 6+6?"}',
    "invalid_utf8": b'{"question": "\xff"}',
    "lone_surrogate": b'{"question": "\\ud800"}',
    "nul_byte": b'{"question": "a\x00b"}',
    "two_objects": b'{"question": "a"}{"question": "b"}',
    "deep": b"[" * 5_000 + b"]" * 5_000,
    "empty_object": b"{}",
}


def test_bad_lines_cost_only_themselves_in_a_large_file(tmp_path, monkeypatch):
    """3,000 good lines with every kind of bad line spread over them, read in small chunks: the rows
    equal the per-record path's, and only the slices holding a bad line are parsed line by line."""
    good = json.dumps(GOOD).encode()
    lines, bad_at = [], {}
    for i in range(3_000):
        if i % 200 == 17 and len(bad_at) < len(BAD):
            kind = list(BAD)[len(bad_at)]
            bad_at[i] = kind
            lines.append(BAD[kind])
        else:
            lines.append(good)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    spec = SourceSpec(
        name="m", path=path, fields={"problem": "question", "answer": "answer", "tests": "tests"}
    )
    expected = per_record(spec)

    parsed: list[bytes] = []
    parse_line = jsonl.parse_line
    monkeypatch.setattr(jsonl, "parse_line", lambda raw: parsed.append(raw) or parse_line(raw))
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(jsonl, "SLICE_LINES", 50)
    got = comparable(list(read_source(spec, 10_000)))

    assert got.equals(expected)
    assert len(parsed) <= 50 * len(bad_at), "only the slices with a bad line went line by line"
    errors = dict(zip(got["row"], got["error"], strict=True))
    assert {kind: errors[i] for i, kind in bad_at.items()} == {
        "truncated": "malformed_json",
        "blank": "blank_line",
        "whitespace": "blank_line",
        "null": "not_an_object",
        "array": "not_an_object",
        "problem_is_a_number": "problem_not_text",
        "answer_changes_type": None,  # kept, with its answer as text
        "duplicate_key": None,  # Python's json keeps the last value
        "invalid_utf8": "undecodable_line",
        "lone_surrogate": "undecodable_line",
        "nul_byte": "malformed_json",
        "two_objects": "malformed_json",
        "deep": "too_deeply_nested",
        "empty_object": None,  # an object without the field: missing_problem in classify
    }
    assert got.filter(pl.col("error").is_null() & pl.col("problem").is_null()).height == 1
    assert got["row"].to_list() == list(range(3_000))


def test_a_line_longer_than_a_chunk_and_a_last_line_without_newline(tmp_path, monkeypatch):
    long = {"question": "x" * 200_000, "answer": 1}
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"\n".join(json.dumps(r).encode() for r in [GOOD, long, GOOD]))  # no final \n
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 4 << 10)
    spec = SourceSpec(name="l", path=path, fields={"problem": "question"})
    got = comparable(list(read_source(spec, 10_000)))
    assert got.equals(per_record(spec))
    assert got["problem"].str.len_chars().to_list() == [12, 200_000, 12]


@pytest.mark.parametrize("limit", [1, 2_500])
def test_limit_stops_reading(tmp_path, monkeypatch, limit):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(3_000)))
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 8 << 10)
    spec = SourceSpec(name="l", path=path, fields={"problem": "question"}, limit=limit)
    frames = list(read_source(spec, 10_000))
    assert pl.concat(frames)["row"].to_list() == list(range(limit))


def test_structures_and_timestamp_like_text_stay_what_they_were(tmp_path, monkeypatch):
    """Lists become their JSON (Parquet printed a polars Series repr before), and ISO dates, which
    pyarrow would read as timestamps, stay the text they were, in every chunk."""
    rows = [
        {"problem": f"2025-01-0{i % 9 + 1}T00:00:00", "tests": [{"in": str(i)}], "when": "2024-08-03"}
        for i in range(400)
    ]
    path = tmp_path / "dated.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pl.DataFrame(rows).write_parquet(tmp_path / "dated.parquet")
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 4 << 10)
    spec = SourceSpec(name="d", path=path)
    expected = per_record(spec)
    for source in (path, tmp_path / "dated.parquet"):
        got = comparable(list(read_source(spec.model_copy(update={"path": source}), 10_000)))
        assert got.equals(expected), source.name
    assert expected["problem"][0] == "2025-01-01T00:00:00" and expected["tests"][0] == '[{"in": "0"}]'
    assert json.loads(expected["meta"][0]) == {"when": "2024-08-03"}


def test_a_field_whose_type_keeps_changing_costs_speed_not_rows(tmp_path, monkeypatch):
    """2,000 lines whose answer alternates number/text (pyarrow rejects every slice), then 3,000 clean
    lines: the same rows as the per-record path, and the fast path returns for the clean part."""
    rows = [{"question": f"q{i}", "answer": i if i % 2 else str(i)} for i in range(2_000)]
    rows += [{"question": f"q{i}", "answer": str(i)} for i in range(2_000, 5_000)]
    path = tmp_path / "typed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = SourceSpec(name="t", path=path, fields={"problem": "question"})
    expected = per_record(spec)
    parsed: list[bytes] = []
    parse_line = jsonl.parse_line
    monkeypatch.setattr(jsonl, "parse_line", lambda raw: parsed.append(raw) or parse_line(raw))
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 32 << 10)
    monkeypatch.setattr(jsonl, "SLICE_LINES", 50)
    got = comparable(list(read_source(spec, 10_000)))
    assert got.equals(expected)
    assert got["answer"][:3].to_list() == ["0", "1", "2"]
    lines_per_chunk = (32 << 10) // len(json.dumps(rows[-1]))
    assert 2_000 <= len(parsed) <= 2_000 + lines_per_chunk + 50


def mixed_file(path: Path, lines: int = 3_000) -> Path:
    """A byte-order mark, every kind of bad line, a line longer than a chunk, no final newline."""
    good = json.dumps(GOOD).encode()
    rows = [list(BAD.values())[i // 97 % len(BAD)] if i % 97 == 5 else good for i in range(lines)]
    rows[1_234] = json.dumps({"question": "y" * 50_000}).encode()
    path.write_bytes(codecs.BOM_UTF8 + b"\n".join(rows))
    return path


def test_spans_of_a_big_file_read_every_line_once_with_its_number(tmp_path, monkeypatch):
    spec = SourceSpec(name="m", path=mixed_file(tmp_path / "m.jsonl"), fields={"problem": "question"})
    expected = per_record(spec)
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 8 << 10)
    spans = jsonl.line_spans(spec.path, span_bytes=20 << 10)
    assert len(spans) > 5 and spans[0].start == 0 and spans[-1].end is None
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    got = comparable([f for span in spans for f in read_source(spec, 10_000, span)])
    assert got.equals(expected)
    assert got["row"].to_list() == list(range(3_000))
    assert jsonl.line_spans(spec.path, span_bytes=spec.path.stat().st_size) == [jsonl.LineSpan()]


def test_collection_in_spans_writes_what_one_unit_writes(tmp_path, monkeypatch):
    """A big JSONL file is collected in spans on the workers; kept and dropped rows (and their order)
    are those of the file read as one unit, and a `limit` keeps it whole."""
    path = mixed_file(tmp_path / "m.jsonl")
    config = CollectConfig(sources=[SourceSpec(name="m", path=path, fields={"problem": "question"})])
    whole = run_collect(config, tmp_path / "whole")
    monkeypatch.setattr(jsonl, "SPAN_BYTES", 20 << 10)
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 8 << 10)  # spans are cut at chunk ends
    assert len(Collect().units(config)) > 5
    spans = run_collect(config, tmp_path / "spans")
    for part in ("kept", "dropped"):
        a, b = (pl.read_parquet(tmp_path / run / part / "*.parquet") for run in ("whole", "spans"))
        assert a.height and a.equals(b), part
    assert whole["details"] == spans["details"]
    limited = config.model_copy(update={"sources": [config.sources[0].model_copy(update={"limit": 10})]})
    assert len(Collect().units(limited)) == 1
