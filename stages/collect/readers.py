"""Readers: every source format becomes batches of mapped frames (see `mapping`).

Columnar sources (Parquet, CSV) and JSONL are mapped with polars expressions, a batch at a time
(JSONL through pyarrow's reader, with a per-line fallback: see `jsonl`); JSON arrays and `datasets`
are mapped per record. One malformed line or one wrong-typed field costs one dropped row, never the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.csv as pacsv

from stages.collect.fields import parse_path
from stages.collect.jsonl import LineSpan, jsonl_frames, jsonl_records, line_spans
from stages.collect.mapping import Paths, Record, map_frame, record_frames
from stages.collect.spec import SourceSpec
from stages.store import stream_parquet

READ_BATCH_ROWS = 10_000


class SourceError(RuntimeError):
    """A source that cannot be read at all (missing file, unknown dataset)."""


def read_source(spec: SourceSpec, batch_rows: int, span: LineSpan | None = None) -> Iterator[pl.DataFrame]:
    """Mapped frames for one source (or one span of a JSONL source), at most `spec.limit` rows in all."""
    fmt = spec.resolved_format()
    _check_file(spec)
    paths: Paths = {t: parse_path(p) for t, p in spec.fields.paths().items()}
    if fmt in ("parquet", "csv"):
        yield from _limit_frames(_columnar(spec, fmt, paths, batch_rows), spec.limit)
    elif fmt == "jsonl" and spec.hf is None:
        assert spec.path is not None
        yield from _limit_frames(jsonl_frames(spec.path, paths, span), spec.limit)
    else:
        records = _records(spec, fmt)
        if spec.limit is not None:
            records = islice(records, spec.limit)
        yield from record_frames(records, paths, batch_rows)


def source_spans(spec: SourceSpec) -> list[LineSpan | None]:
    """The parts of a source that can be collected in parallel: spans of a big local JSONL file read
    whole (a `limit` counts across the file), else the whole source (None)."""
    if spec.resolved_format() != "jsonl" or spec.path is None or spec.limit is not None:
        return [None]
    _check_file(spec)
    spans = line_spans(spec.path)
    return [None] if len(spans) == 1 else list(spans)


def _check_file(spec: SourceSpec) -> None:
    if spec.path is not None and not spec.path.is_file():
        raise SourceError(f"source {spec.name!r}: no file at {spec.path}")


# --- record sources -------------------------------------------------------------------------------


def iter_records(path: Path) -> Iterator[Record]:
    """(record, error, detail) for every row of a JSONL, JSON-array, Parquet or CSV file, for
    commands that map rows themselves (e.g. `longcot verify`); bad rows come with their reason."""
    yield from iter_source_records(SourceSpec(name=path.stem, path=path))


def iter_source_records(spec: SourceSpec) -> Iterator[Record]:
    """(record, error, detail) for every row of a source, columnar rows as dicts."""
    fmt = spec.resolved_format()
    _check_file(spec)
    if fmt in ("parquet", "csv"):
        for frame in _frames(spec, fmt, READ_BATCH_ROWS):
            yield from ((r, None, None) for r in frame.iter_rows(named=True))
        return
    for record, error, detail in _records(spec, fmt):
        if error is None and not isinstance(record, dict):
            error, detail = "not_an_object", f"a JSON {type(record).__name__}"
        yield record, error, detail


def _records(spec: SourceSpec, fmt: str | None) -> Iterator[Record]:
    if spec.hf is not None:
        yield from ((r, None, None) for r in _hub_records(spec))
    elif fmt == "jsonl":
        assert spec.path is not None
        yield from jsonl_records(spec.path)
    else:
        yield from _json_array_records(spec)


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


def _columnar(spec: SourceSpec, fmt: str, paths: Paths, batch_rows: int) -> Iterator[pl.DataFrame]:
    offset = 0
    for frame in _frames(spec, fmt, batch_rows):
        yield map_frame(frame, paths, offset)
        offset += frame.height


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
