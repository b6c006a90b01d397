"""Field paths such as `prompt[0].value`: parsed once, then applied to dict records or Arrow columns."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from stages.records import to_json

_TOKEN = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def parse_path(path: str) -> list[str | int]:
    """`prompt[0].value` -> ["prompt", 0, "value"]; raises ValueError on anything else."""
    tokens: list[str | int] = []
    pos = 0
    for m in _TOKEN.finditer(path):
        gap = path[pos : m.start()]
        if gap not in ("", "."):
            break
        tokens.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(path) or not tokens or not isinstance(tokens[0], str):
        raise ValueError(f"bad field path {path!r}: expected names joined by '.' with optional [index]")
    return tokens


def get_path(record: Any, tokens: list[str | int]) -> Any:
    """The value at `tokens` in a dict record, or None where any step is missing."""
    for token in tokens:
        if isinstance(token, int):
            if not isinstance(record, list) or not -len(record) <= token < len(record):
                return None
            record = record[token]
        else:
            if not isinstance(record, dict):
                return None
            record = record.get(token)
    return record


def has_path(record: Any, tokens: list[str | int]) -> bool:
    """Whether every step of `tokens` exists in `record` (the value at the end may be null)."""
    *steps, last = tokens
    parent = get_path(record, steps) if steps else record
    if isinstance(last, int):
        return isinstance(parent, list) and -len(parent) <= last < len(parent)
    return isinstance(parent, dict) and last in parent


def path_expr(tokens: list[str | int], schema: pl.Schema) -> pl.Expr | None:
    """The polars expression for `tokens` on a frame of `schema`, or None if the top column is absent."""
    if tokens[0] not in schema:
        return None
    expr = pl.col(str(tokens[0]))
    for token in tokens[1:]:
        expr = expr.list.get(token, null_on_oob=True) if isinstance(token, int) else expr.struct.field(token)
    return expr


def as_text(value: Any, unwrap: bool = False) -> str | None:
    """A field value as text: strings as they are, numbers printed, other structures as JSON (test
    cases, choices). With `unwrap` (answers), a one-element list is its element: `["$3$"]` -> `$3$`."""
    if value is None or isinstance(value, str):
        return value
    if unwrap and isinstance(value, list) and len(value) == 1 and not isinstance(value[0], (list, dict)):
        return as_text(value[0])
    if isinstance(value, (bool, int, float)):
        return str(value)
    return to_json(value)


def text_expr(expr: pl.Expr, dtype: pl.DataType, unwrap: bool = False) -> pl.Expr:
    """`as_text` for a whole column of a known dtype, vectorised: structures become compact JSON
    (keys in column order, absent struct fields as null: the same JSON value as `as_text` gives)."""
    if dtype == pl.String:
        return expr
    if dtype.is_numeric():
        return expr.cast(pl.String)
    if dtype == pl.Boolean:
        return expr.cast(pl.String).str.to_titlecase()  # "True", as `as_text` prints it
    wrapped = pl.struct(expr.alias("v")).struct.json_encode()  # {"v":<json>}: encodes any dtype
    json_text = pl.when(expr.is_not_null()).then(wrapped.str.slice(5).str.head(-1))
    if unwrap and isinstance(dtype, pl.List) and not dtype.inner.is_nested():
        first = text_expr(expr.list.first(), dtype.inner)
        return pl.when(expr.list.len() == 1).then(first).otherwise(json_text)
    return json_text
