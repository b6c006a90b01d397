"""Source rows -> *mapped frames*, the one shape every reader yields:

    problem, answer, solution, tests, domain   text (null where absent)
    meta                                        JSON text of the rest of the source row
    row                                         position in the source (line number - 1 for JSONL)
    error, error_detail                         why a row is unusable before any content check

`map_frame` maps a whole frame with polars expressions (Parquet, CSV, JSONL chunks); `record_frames`
maps Python records one at a time (JSON arrays, `datasets`, JSONL lines the chunk reader rejected),
so one wrong-typed field costs one dropped row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import polars as pl

from stages.collect.fields import as_text, get_path, path_expr, text_expr
from stages.records import conform, to_json

TARGETS = ("problem", "answer", "solution", "tests", "domain")
MAPPED_SCHEMA: dict[str, pl.DataType] = {
    **{t: pl.String() for t in TARGETS},
    "meta": pl.String(),
    "row": pl.Int64(),
    "error": pl.String(),
    "error_detail": pl.String(),
}
Record = tuple[Any, str | None, str | None]  # (record, error reason, error detail)
Paths = dict[str, list[str | int]]


def map_record(record: Any, paths: Paths) -> dict[str, Any]:
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


def record_frames(
    records: Iterable[Record], paths: Paths, batch_rows: int, start: int = 0
) -> Iterator[pl.DataFrame]:
    """Mapped frames of `batch_rows` records; the first record is at position `start`."""
    batch: list[dict[str, Any]] = []
    for position, (record, error, detail) in enumerate(records, start):
        row = {"error": error, "error_detail": detail} if error else map_record(record, paths)
        row["row"] = position
        batch.append(row)
        if len(batch) >= batch_rows:
            yield pl.DataFrame(batch, schema=MAPPED_SCHEMA)
            batch = []
    if batch:
        yield pl.DataFrame(batch, schema=MAPPED_SCHEMA)


def map_frame(frame: pl.DataFrame, paths: Paths, offset: int) -> pl.DataFrame:
    """A frame of source rows (columns, structs, lists) mapped with expressions; row `offset` first.
    A problem column that is not text marks its non-null rows `problem_not_text`."""
    schema = frame.schema
    exprs = []
    error = pl.lit(None, pl.String)
    for target, tokens in paths.items():
        expr = path_expr(tokens, schema)
        if expr is None:
            continue
        dtype = pl.LazyFrame(schema=schema).select(expr).collect_schema().dtypes()[0]
        if dtype == pl.Null:
            continue  # null in every row of this frame
        if target == "problem" and dtype != pl.String:
            error = pl.when(expr.is_not_null()).then(pl.lit("problem_not_text"))
            exprs.append(
                pl.when(expr.is_not_null()).then(pl.lit(f"problem is a {dtype}")).alias("error_detail")
            )
            continue
        exprs.append(text_expr(expr, dtype, unwrap=target == "answer").alias(target))
    used = {str(tokens[0]) for tokens in paths.values()}
    rest = [c for c in frame.columns if c not in used]
    meta = pl.struct(rest).struct.json_encode() if rest else pl.lit("{}")
    return frame.select(
        *exprs,
        meta.alias("meta"),
        pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias("row"),
        error.alias("error"),
    ).pipe(conform, MAPPED_SCHEMA)
