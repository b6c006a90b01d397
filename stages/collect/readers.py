"""Readers: every source format becomes batches of *mapped frames* with the same columns.

    problem, answer, solution, tests, domain   text (null where absent)
    meta                                        JSON text of the rest of the source row
    row                                         position in the source (line number - 1 for JSONL)
    error, error_detail                         why a row is unusable before any content check

Columnar sources (Parquet, CSV) are mapped with polars expressions, a batch at a time; record
sources (JSONL, JSON arrays, `datasets`) are mapped per record so one malformed line or one
wrong-typed field costs one dropped row, never the run.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.csv as pacsv

from stages.collect.fields import as_text, get_path, parse_path, path_expr, text_expr
from stages.collect.spec import SourceSpec
from stages.records import conform, to_json
from stages.store import stream_parquet

TARGETS = ("problem", "answer", "solution", "tests", "domain")
MAPPED_SCHEMA: dict[str, pl.DataType] = {
    **{t: pl.String() for t in TARGETS},
    "meta": pl.String(),
    "row": pl.Int64(),
    "error": pl.String(),
    "error_detail": pl.String(),
}
RAW_PREVIEW_CHARS = 2_000
READ_BATCH_ROWS = 10_000


class SourceError(RuntimeError):
    """A source that cannot be read at all (missing file, unknown dataset)."""


def read_source(spec: SourceSpec, batch_rows: int) -> Iterator[pl.DataFrame]:
    """Mapped frames for one source, at most `spec.limit` rows in all."""
    fmt = spec.resolved_format()
    if spec.path is not None and not spec.path.is_file():
        raise SourceError(f"source {spec.name!r}: no file at {spec.path}")
    if fmt in ("parquet", "csv"):
        yield from _limit_frames(_columnar(spec, fmt, batch_rows), spec.limit)
        return
    records = _records(spec, fmt)
    if spec.limit is not None:
        records = islice(records, spec.limit)
    yield from _record_frames(records, spec, batch_rows)


# --- record sources -------------------------------------------------------------------------------


def iter_records(path: Path) -> Iterator[Record]:
    """(record, error, detail) for every row of a JSONL, JSON-array, Parquet or CSV file, for
    commands that map rows themselves (e.g. `longcot verify`); bad rows come with their reason."""
    yield from iter_source_records(SourceSpec(name=path.stem, path=path))


def iter_source_records(spec: SourceSpec) -> Iterator[Record]:
    """(record, error, detail) for every row of a source, columnar rows as dicts."""
    fmt = spec.resolved_format()
    if spec.path is not None and not spec.path.is_file():
        raise SourceError(f"source {spec.name!r}: no file at {spec.path}")
    if fmt in ("parquet", "csv"):
        for frame in _frames(spec, fmt, READ_BATCH_ROWS):
            yield from ((r, None, None) for r in frame.iter_rows(named=True))
        return
    for record, error, detail in _records(spec, fmt):
        if error is None and not isinstance(record, dict):
            error, detail = "not_an_object", f"a JSON {type(record).__name__}"
        yield record, error, detail


Record = tuple[Any, str | None, str | None]  # (record, error reason, error detail)


def _records(spec: SourceSpec, fmt: str | None) -> Iterator[Record]:
    if spec.hf is not None:
        yield from ((r, None, None) for r in _hub_records(spec))
    elif fmt == "jsonl":
        yield from _jsonl_records(spec)
    else:
        yield from _json_array_records(spec)


def _jsonl_records(spec: SourceSpec) -> Iterator[Record]:
    """One record per `\\n`-separated line (not `splitlines`: texts may hold U+2028); a UTF-8
    byte-order mark before the first line is not part of it."""
    assert spec.path is not None
    with spec.path.open("rb") as f:
        for number, raw in enumerate(f):
            yield parse_line(raw.removeprefix(codecs.BOM_UTF8) if number == 0 else raw)


def parse_line(raw: bytes) -> Record:
    """One JSONL line as (record, error, detail): every way a line can fail to decode becomes a
    reason for that line alone (a deeply nested line raises RecursionError in `json`, not a
    JSONDecodeError, and must not end the run)."""
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        return None, "undecodable_line", f"{exc.reason} at byte {exc.start}: {raw[:200]!r}"
    if not line.strip():
        return None, "blank_line", "an empty line"
    preview = line[:RAW_PREVIEW_CHARS]
    try:
        return json.loads(line), None, None
    except json.JSONDecodeError as exc:
        return None, "malformed_json", f"{exc.msg} at column {exc.colno}: {preview}"
    except RecursionError:
        return None, "too_deeply_nested", f"nesting deeper than the JSON decoder allows: {preview}"
    except Exception as exc:  # any other decoder failure (MemoryError, ...) costs this line only
        return None, "malformed_json", f"{type(exc).__name__}: {exc}: {preview}"


def _json_array_records(spec: SourceSpec) -> Iterator[Record]:
    assert spec.path is not None
    try:
        data = json.loads(spec.path.read_bytes())  # bytes: json detects a byte-order mark itself
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"source {spec.name!r}: {spec.path} is not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise SourceError(
            f"source {spec.name!r}: {spec.path} holds a JSON {type(data).__name__}, expected an array"
        )
    yield from ((r, None, None) for r in data)


def _hub_records(spec: SourceSpec) -> Iterator[Any]:
    """Rows from `datasets.load_dataset`: the Hub, or a local builder (`json`, `parquet`) offline."""
    import datasets  # heavy import, only for this source kind

    hf = spec.hf
    assert hf is not None
    try:
        ds = datasets.load_dataset(
            hf.dataset,
            hf.config,
            split=hf.split,
            data_files=hf.data_files,
            streaming=hf.streaming,
            revision=hf.revision,
        )
    except Exception as exc:
        raise SourceError(f"source {spec.name!r}: datasets could not load {hf.dataset!r}: {exc}") from None
    yield from ds


def _map_record(record: Any, paths: dict[str, list[str | int]]) -> dict[str, Any]:
    if not isinstance(record, dict):
        return {
            "error": "not_an_object",
            "error_detail": f"a JSON {type(record).__name__}: {str(record)[:200]}",
        }
    row: dict[str, Any] = {}
    used = {str(tokens[0]) for tokens in paths.values()}
    for target, tokens in paths.items():
        value = get_path(record, tokens)
        if target == "problem" and value is not None and not isinstance(value, str):
            return {"error": "problem_not_text", "error_detail": f"problem is a {type(value).__name__}"}
        row[target] = as_text(value, unwrap=target == "answer")
    row["meta"] = to_json({k: v for k, v in record.items() if k not in used})
    return row


def _record_frames(records: Iterable[Record], spec: SourceSpec, batch_rows: int) -> Iterator[pl.DataFrame]:
    paths = {t: parse_path(p) for t, p in spec.fields.paths().items()}
    batch: list[dict[str, Any]] = []
    for position, (record, error, detail) in enumerate(records):
        row = {"error": error, "error_detail": detail} if error else _map_record(record, paths)
        if row.get("error"):
            row["error_detail"] = f"{location(spec, position)}: {row['error_detail']}"
        row["row"] = position
        batch.append(row)
        if len(batch) >= batch_rows:
            yield pl.DataFrame(batch, schema=MAPPED_SCHEMA)
            batch = []
    if batch:
        yield pl.DataFrame(batch, schema=MAPPED_SCHEMA)


def location(spec: SourceSpec, position: int) -> str:
    """Where a source row is, as people look for it: `file:line` for JSONL (1-based)."""
    if spec.hf is not None:
        return f"{spec.hf.dataset} row {position}"
    if spec.resolved_format() == "jsonl":
        return f"{spec.path}:{position + 1}"
    return f"{spec.path} row {position}"


# --- columnar sources -----------------------------------------------------------------------------


def _frames(spec: SourceSpec, fmt: str, batch_rows: int) -> Iterator[pl.DataFrame]:
    """Raw frames of a Parquet or CSV file, streamed."""
    assert spec.path is not None
    if fmt == "parquet":
        yield from stream_parquet(spec.path, None, batch_rows)
        return
    read_options = pacsv.ReadOptions(block_size=1 << 24)
    for batch in pacsv.open_csv(spec.path, read_options=read_options):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield frame


def _columnar(spec: SourceSpec, fmt: str, batch_rows: int) -> Iterator[pl.DataFrame]:
    paths = {t: parse_path(p) for t, p in spec.fields.paths().items()}
    offset = 0
    for frame in _frames(spec, fmt, batch_rows):
        yield _map_frame(frame, paths, offset)
        offset += frame.height


def _map_frame(frame: pl.DataFrame, paths: dict[str, list[str | int]], offset: int) -> pl.DataFrame:
    schema = frame.schema
    exprs = []
    for target, tokens in paths.items():
        expr = path_expr(tokens, schema)
        if expr is None:
            continue
        dtype = pl.LazyFrame(schema=schema).select(expr).collect_schema().dtypes()[0]
        if target == "problem" and dtype != pl.String:
            return frame.select(
                pl.lit("problem_not_text").alias("error"),
                pl.lit(f"problem column is {dtype}").alias("error_detail"),
                pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias("row"),
            ).pipe(conform, MAPPED_SCHEMA)
        exprs.append(text_expr(expr, dtype, unwrap=target == "answer").alias(target))
    used = {str(tokens[0]) for tokens in paths.values()}
    rest = [c for c in frame.columns if c not in used]
    meta = pl.struct(rest).struct.json_encode() if rest else pl.lit("{}")
    return frame.select(
        *exprs, meta.alias("meta"), pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias("row")
    ).pipe(conform, MAPPED_SCHEMA)


def _limit_frames(frames: Iterator[pl.DataFrame], limit: int | None) -> Iterator[pl.DataFrame]:
    if limit is None:
        yield from frames
        return
    left = limit
    for frame in frames:
        if left <= 0:
            return
        yield frame.head(left)
        left -= frame.height
