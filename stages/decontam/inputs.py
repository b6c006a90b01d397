"""Audit inputs: any JSONL/JSON/Parquet/CSV file, including chat-formatted SFT sets.

For a file whose problem lives in a `messages` / `conversations` column (a list of turns), the
first user turn becomes a `problem` column, so the rest of the pipeline sees ordinary rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

CHAT_COLUMNS = ("messages", "conversations", "conversation", "chat", "prompt")
USER_ROLES = ("user", "human")


def top_level_fields(path: Path) -> list[str]:
    """Column names of a file, reading only its schema or first record."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return list(pl.read_parquet_schema(path))
    if suffix == ".csv":
        return list(pl.scan_csv(path).collect_schema())
    with path.open("rb") as f:
        if suffix == ".json":
            data = json.loads(f.read())
            first = data[0] if isinstance(data, list) and data else {}
        else:
            first = json.loads(f.readline() or b"{}")  # JSONL: one record per "\n"-terminated line
    return list(first) if isinstance(first, dict) else []


def _frame(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix == ".json":
        return pl.DataFrame(json.loads(path.read_bytes()), infer_schema_length=None)
    return pl.read_ndjson(path, infer_schema_length=None)


def user_turn_expr(column: str, dtype: pl.DataType) -> pl.Expr | None:
    """The first user/human turn's text of a list-of-turns column ({role, content} or {from, value})."""
    if not isinstance(dtype, pl.List) or not isinstance(dtype.inner, pl.Struct):
        return None
    names = {f.name for f in dtype.inner.fields}
    role = next((r for r in ("role", "from") if r in names), None)
    text = next((t for t in ("content", "value", "text") if t in names), None)
    if role is None or text is None:
        return None
    turn = pl.element().struct
    return (
        pl.col(column)
        .list.eval(pl.element().filter(turn.field(role).str.to_lowercase().is_in(USER_ROLES)))
        .list.first()
        .struct.field(text)
    )


def prepare_input(path: Path, field: str, work_dir: Path) -> tuple[Path, str]:
    """(file, field) to collect: the file as is when it has `field` (a comma-separated list of
    candidates; paths like `prompt[0].value` work), else a Parquet copy with the first user turn of
    its chat column as `problem`."""
    if not path.is_file():
        raise FileNotFoundError(f"no input file {path}")
    fields = top_level_fields(path)
    for candidate in (f.strip() for f in field.split(",") if f.strip()):
        if candidate.split(".")[0].split("[")[0] in fields:
            return path, candidate
    chat = [c for c in CHAT_COLUMNS if c in fields]
    if not chat:
        raise ValueError(
            f"{path.name}: no column {field!r} and no messages/conversations column (has {', '.join(fields)})"
        )
    frame = _frame(path)
    expr = next((e for c in chat if (e := user_turn_expr(c, frame.schema[c])) is not None), None)
    if expr is None:
        raise ValueError(
            f"{path.name}: column {chat[0]!r} is not a list of {{role, content}} or {{from, value}} turns"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / f"{path.stem}.parquet"
    frame.with_columns(expr.alias("problem")).write_parquet(target)
    return target, "problem"
