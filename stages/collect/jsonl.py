"""JSONL, read fast and strictly: line-aligned byte ranges go through pyarrow's JSON reader; a range
the reader rejects is retried in small slices, and only a slice that still fails is parsed line by
line in Python, so a bad line gets its own drop reason and evidence and costs no good row.

pyarrow's reader, not polars', because it is strict where the per-line parser is: a field whose JSON
type changes between rows (`"problem": 17` among strings), a duplicate key, a raw control character
or a non-object line make it fail, and the slice falls back, instead of being silently coerced
(polars turns 17 into "17"). A slice is trusted only when it gives one object row per line: a blank
line (skipped by the reader) or a `null` line (read as a row of nulls) sends it to the fallback too.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.json as pajson

from stages.collect.mapping import Paths, Record, map_frame, record_frames
from stages.records import to_json

CHUNK_BYTES = 16 << 20  # memory stays flat: a chunk, its table and its mapped frame at a time
SPAN_BYTES = 32 << 20  # a bigger file is collected in spans of about this size, in parallel
BLOCK_BYTES = 4 << 20  # pyarrow parses the blocks of a chunk on its threads
SLICE_LINES = 1_000  # a rejected chunk is retried in slices of this many lines
GIVE_UP = 3  # failed reads in a row after which only a chunk's first slice is tried
RAW_PREVIEW_CHARS = 2_000
_READ_OPTIONS = pajson.ReadOptions(block_size=BLOCK_BYTES)
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_line(raw: bytes) -> Record:
    """One JSONL line as (record, error, detail): every way a line can fail to decode becomes a
    reason for that line alone (a deeply nested line raises RecursionError in `json`, not a
    JSONDecodeError, and must not end the run). The happy path does no more than decode and load."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, "undecodable_line", f"{exc.reason} at byte {exc.start}: {raw[:200]!r}"
    try:
        record = json.loads(line)
        if ("\\ud" in line or "\\uD" in line) and _SURROGATE.search(line):
            to_json(record).encode("utf-8")  # a lone `\ud800` decodes but is no UTF-8 text
        return record, None, None
    except json.JSONDecodeError as exc:
        if not line.strip():
            return None, "blank_line", "an empty line"
        return None, "malformed_json", f"{exc.msg} at column {exc.colno}: {_preview(line)}"
    except UnicodeEncodeError as exc:
        return None, "undecodable_line", f"{exc.reason}: {_preview(line)}"
    except RecursionError:
        return None, "too_deeply_nested", f"nesting deeper than the JSON decoder allows: {_preview(line)}"
    except Exception as exc:  # any other decoder failure (MemoryError, ...) costs this line only
        return None, "malformed_json", f"{type(exc).__name__}: {exc}: {_preview(line)}"


def _preview(line: str) -> str:
    return line[:RAW_PREVIEW_CHARS].rstrip("\r\n")


def jsonl_records(path: Path) -> Iterator[Record]:
    """One record per `\\n`-separated line (not `splitlines`: texts may hold U+2028)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f):
            yield parse_line((raw.removeprefix(codecs.BOM_UTF8) if number == 0 else raw).removesuffix(b"\n"))


@dataclass(frozen=True)
class LineSpan:
    """Bytes [start, end) of a JSONL file (`end` None: to its end), whole lines, the first of them line
    `first_line` (0-based): a part of a big file that a worker collects on its own."""

    start: int = 0
    end: int | None = None
    first_line: int = 0


def line_spans(path: Path, span_bytes: int | None = None) -> list[LineSpan]:
    """The file cut at line ends into spans of about `span_bytes` (SPAN_BYTES); one pass counts the
    lines before each cut (~0.25 s for 400 MB), so every span knows its rows' line numbers."""
    span_bytes = span_bytes or SPAN_BYTES
    if path.stat().st_size <= span_bytes:
        return [LineSpan()]
    with path.open("rb") as f:
        at = len(codecs.BOM_UTF8) if f.read(3) == codecs.BOM_UTF8 else 0  # line_chunks leaves it out
    spans, start, first, lines = [], 0, 0, 0
    for chunk, count in line_chunks(path):
        at, lines = at + len(chunk), lines + count
        if at - start >= span_bytes:
            spans.append(LineSpan(start, at, first))
            start, first = at, lines
    if start < path.stat().st_size:
        spans.append(LineSpan(start, None, first))
    return spans


def line_chunks(
    path: Path, chunk_bytes: int | None = None, span: LineSpan | None = None
) -> Iterator[tuple[memoryview, int]]:
    """The file (or its `span`) in ranges of about `chunk_bytes` (CHUNK_BYTES) that end at a line end,
    with their number of lines; a line longer than that is one range, and a UTF-8 byte-order mark
    before the first line is not part of it. One buffer is read into again and again (no allocation
    and page faults per range), so a range is only valid until the next one is asked for."""
    span = span or LineSpan()
    buf = bytearray(chunk_bytes or CHUNK_BYTES)
    held = 0  # bytes of an unfinished line at the start of `buf`
    left = float("inf") if span.end is None else span.end - span.start

    def read_into(view: memoryview) -> int:
        nonlocal left
        got = f.readinto(view[: int(min(len(view), left))]) or 0
        left -= got
        return got

    with path.open("rb") as f:
        f.seek(span.start)
        read = read_into(memoryview(buf))
        if span.start == 0 and buf.startswith(codecs.BOM_UTF8):
            buf[: read - 3] = buf[3:read]
            read -= 3
        while read:
            end = held + read
            cut = buf.rfind(b"\n", 0, end) + 1
            if cut:
                yield memoryview(buf)[:cut], buf.count(b"\n", 0, cut)
                buf[: end - cut] = buf[cut:end]  # the unfinished line moves to the front
                held = end - cut
            else:
                held = end
            if held == len(buf):  # one line longer than the buffer: a bigger buffer
                buf = buf + bytearray(len(buf))
            read = read_into(memoryview(buf)[held:])
        if held:
            yield memoryview(buf)[:held], 1


def jsonl_frames(path: Path, paths: Paths, span: LineSpan | None = None) -> Iterator[pl.DataFrame]:
    """Mapped frames of a JSONL file (or of one span of it), `row` = line number - 1."""
    reader = _TableReader()
    offset = span.first_line if span else 0
    for chunk, lines in line_chunks(path, span=span):
        frame = reader.read(chunk, lines) if reader.failures < GIVE_UP else None
        if frame is not None:
            yield map_frame(frame, paths, offset)
        else:
            yield from _fallback(reader, bytes(chunk).removesuffix(b"\n").split(b"\n"), paths, offset)
        offset += lines


def _fallback(reader: _TableReader, lines: list[bytes], paths: Paths, offset: int) -> Iterator[pl.DataFrame]:
    """A rejected chunk in slices. After GIVE_UP failed reads in a row (a field whose type changes
    all through the file) only each chunk's first slice is tried, so the fast path comes back when
    the file changes; the lines of failed slices in a row are mapped as one frame (a frame per slice
    would pay classification's fixed cost per 1,000 rows)."""
    first, parsed = offset, []
    for start in range(0, len(lines), SLICE_LINES):
        part = lines[start : start + SLICE_LINES]
        frame = reader.read(b"\n".join(part), len(part)) if start == 0 or reader.failures < GIVE_UP else None
        if frame is None:
            first = first if parsed else offset + start
            parsed.extend(map(parse_line, part))
            continue
        if parsed:
            yield from record_frames(parsed, paths, len(parsed), first)
            parsed = []
        yield map_frame(frame, paths, offset + start)
    if parsed:
        yield from record_frames(parsed, paths, len(parsed), first)


class _TableReader:
    """pyarrow's JSON reader, with the text it would turn into timestamps kept as text: fields it
    inferred as timestamps are read again, and in later chunks, with an explicit string type."""

    def __init__(self) -> None:
        self.overrides: dict[str, pa.Field] = {}
        self.failures = 0  # reads in a row that gave None

    def read(self, data: bytes | memoryview, lines: int) -> pl.DataFrame | None:
        """The rows of `data`, or None unless they are exactly one object per line."""
        frame = self._frame(data, lines)
        self.failures = 0 if frame is not None else self.failures + 1
        return frame

    def _frame(self, data: bytes | memoryview, lines: int) -> pl.DataFrame | None:
        table = self._table(data)
        if table is not None and (fixed := _as_text_fields(table.schema)):
            self.overrides.update(fixed)
            table = self._table(data)
        if table is None or table.num_rows != lines or table.num_columns == 0:
            return None  # also a blank line, which the reader skips
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        if frame.select(pl.all_horizontal(pl.all().is_null()).any()).item():
            return None  # a `null` line (or `{}`): the per-line parser says which
        return frame

    def _table(self, data: bytes | memoryview) -> pa.Table | None:
        schema = pa.schema(list(self.overrides.values())) if self.overrides else None
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        try:
            table = pajson.read_json(pa.py_buffer(data), read_options=_READ_OPTIONS, parse_options=options)
            table.validate(full=True)  # the reader does not check that strings are UTF-8
        except Exception:  # the reader's errors (ArrowInvalid, ...) only mean "not this way"
            return None
        return table


def _as_text_fields(schema: pa.Schema) -> dict[str, pa.Field]:
    """Top-level fields holding an inferred timestamp somewhere, retyped with strings in its place."""
    fixed = {f.name: f.with_type(_text_type(f.type)) for f in schema}
    return {name: f for name, f in fixed.items() if not f.type.equals(schema.field(name).type)}


def _text_type(dtype: pa.DataType) -> pa.DataType:
    if pa.types.is_temporal(dtype):
        return pa.string()
    if pa.types.is_struct(dtype):
        return pa.struct(
            [dtype.field(i).with_type(_text_type(dtype.field(i).type)) for i in range(dtype.num_fields)]
        )
    if pa.types.is_list(dtype):
        return pa.list_(dtype.value_field.with_type(_text_type(dtype.value_type)))
    return dtype
