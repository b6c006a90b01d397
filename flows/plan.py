"""`longcot run RECIPE --dry-run`: what a run would do, before it spends anything.

Row estimates come from file metadata and line counts (no parsing); the teacher's cost is an upper
bound from the recipe's prices: every collected problem (or the stage's `limit`) x n samples x
(a typical prompt's tokens + max_tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from flows.recipe import Recipe
from stages.collect import SourceSpec

PROMPT_TOKENS = 250  # a typical problem with its template; the report has the real counts


def estimate_rows(spec: SourceSpec) -> int | None:
    """Rows a source will yield (before its limit): Parquet footers, JSONL/CSV line counts; None when
    it cannot be told cheaply (a JSON array, a `datasets` source)."""
    if spec.path is None or not spec.path.is_file():
        return None
    fmt = spec.resolved_format()
    if fmt == "parquet":
        return pq.ParquetFile(spec.path).metadata.num_rows
    if fmt not in ("jsonl", "csv"):
        return None
    lines = 0
    with spec.path.open("rb") as f:
        while chunk := f.read(1 << 22):
            lines += chunk.count(b"\n")
    return lines - (fmt == "csv")


def print_plan(console: Console, recipe: Recipe, limit: int | None, run_dir: Path) -> None:
    sources = Table(title=f"recipe {recipe.name} → {run_dir}", title_justify="left")
    for column in ("source", "where", "rows", "domain"):
        sources.add_column(column, justify="right" if column == "rows" else "left")
    total: int | None = 0
    for spec in recipe.collect_config(limit).sources:
        rows = estimate_rows(spec)
        if rows is not None and spec.limit is not None:
            rows = min(rows, spec.limit)
        total = None if rows is None or total is None else total + rows
        where = str(spec.path) if spec.path else f"hf:{spec.hf.dataset if spec.hf else '?'}"
        sources.add_row(spec.name, where, "?" if rows is None else f"{rows:,}", spec.domain)
    console.print(sources)
    console.print(f"at most {total:,} problems collected" if total is not None else "problem count: unknown")

    stages = Table(title="stages", title_justify="left")
    for column in ("#", "stage", "settings"):
        stages.add_column(column)
    for index, (name, config) in enumerate(recipe.steps(), start=2):
        changed = config.model_dump(mode="json", exclude_defaults=True)
        stages.add_row(f"{index:02d}", name, ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults")
        if name == "generate":
            console.print(stages)
            stages = Table(show_header=False, box=None)
            _print_teacher(console, config.llm, config.limit, total)
    console.print(stages)


def _print_teacher(console: Console, teacher: Any, limit: int | None, problems: int | None) -> None:
    n, max_tokens = teacher.n, teacher.max_tokens
    if limit is not None:
        problems = limit if problems is None else min(problems, limit)
    line = f"teacher: {teacher.backend} {teacher.model}, n={n}, max_tokens={max_tokens:,}"
    prices = teacher.prices
    if problems is not None:
        line += f"; at most {problems * n:,} samples"
        if prices.input_per_1m or prices.output_per_1m:
            batch = teacher.mode == "batch"
            cost = prices.cost(problems * n * PROMPT_TOKENS, problems * n * max_tokens, batch=batch)
            rate = " at the batch rate" if batch else ""
            line += f", estimated cost at most ${cost:,.2f}{rate} (every sample at max_tokens)"
    console.print(line)
