"""Row schemas (DESIGN.md "Records") and helpers to build and check frames against them."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

DOMAINS = ("math", "code", "science", "puzzle", "general")

PROBLEM_SCHEMA: dict[str, pl.DataType] = {
    "uid": pl.String(),
    "source": pl.String(),
    "domain": pl.String(),
    "problem": pl.String(),
    "answer": pl.String(),
    "solution": pl.String(),
    "tests": pl.String(),
    "meta": pl.String(),
    # every source label this problem was collected from; exact dedup merges them
    "sources": pl.List(pl.String()),
}

GENERATION_SCHEMA: dict[str, pl.DataType] = {
    "uid": pl.String(),
    "sample": pl.Int32(),
    "model": pl.String(),
    "prompt_hash": pl.String(),
    "reasoning": pl.String(),
    "response": pl.String(),
    "finish_reason": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "latency_s": pl.Float64(),
    "cost_usd": pl.Float64(),
}

DROP_SCHEMA: dict[str, pl.DataType] = {"drop_reason": pl.String(), "drop_detail": pl.String()}


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Columns of `schema` first, in order and cast (missing ones as nulls), extra columns after."""
    missing = [
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in df.columns
    ]
    df = df.with_columns(missing) if missing else df
    extra = [c for c in df.columns if c not in schema]
    return df.select([pl.col(n).cast(t) for n, t in schema.items()] + extra)


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def to_json(value: Any) -> str:
    """Compact, key-sorted JSON for `meta` and `drop_detail` (non-JSON values become strings)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str, separators=(",", ":"))


def detail_json(**fields: pl.Expr | Any) -> pl.Expr:
    """A `drop_detail` expression: a JSON object built from column expressions and constants."""
    parts = [(v if isinstance(v, pl.Expr) else pl.lit(v)).alias(k) for k, v in fields.items()]
    return pl.struct(parts).struct.json_encode()
