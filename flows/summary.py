"""Terminal views of a run: the stage summary table and rows with their evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from flows.console import say
from stages.reports.table import stage_counts
from stages.store import read_shards


def stage_table(manifest: dict[str, Any]) -> Any:
    return stage_counts(manifest["stages"], title=f"run {manifest['run']} — {manifest['status']}").rich()


def print_summary(manifest: dict[str, Any], run_dir: Path) -> None:
    say(stage_table(manifest))
    if manifest.get("error"):
        say(f"[red]error:[/red] {manifest['error']}")
    report = run_dir / "report.html"
    say(f"manifest: {run_dir / 'manifest.json'}")
    if report.is_file():
        say(f"report:   {report}")
    if (run_dir / "run.log").is_file():
        say(f"log:      {run_dir / 'run.log'}")


def find_stage(run_dir: Path, stage: str) -> Path:
    """A stage directory by its name (`02-exact_dedup`) or kind (`exact_dedup`)."""
    candidates = [d for d in sorted(run_dir.iterdir()) if d.is_dir() and not d.name.endswith(".partial")]
    for d in candidates:
        if stage in (d.name, d.name.split("-", 1)[-1]):
            return d
    known = ", ".join(d.name for d in candidates if (d / "report.json").is_file())
    raise FileNotFoundError(f"no stage {stage!r} in {run_dir} (stages: {known or 'none'})")


def select_rows(stage_dir: Path, dropped: bool, reason: str | None, n: int) -> pl.DataFrame:
    """The first `n` rows of a stage's kept (or dropped, optionally by reason) shards."""
    found: list[pl.DataFrame] = []
    left = n
    for batch in read_shards(stage_dir / ("dropped" if dropped else "kept")):
        if reason is not None:
            batch = batch.filter(pl.col("drop_reason") == reason)
        found.append(batch.head(left))
        left -= found[-1].height
        if left <= 0:
            break
    return pl.concat(found, how="diagonal_relaxed") if found else pl.DataFrame()


def _clip(value: Any, limit: int = 400) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + f" … (+{len(text) - limit} chars)"


def row_panel(row: dict[str, Any]) -> Panel:
    title = " · ".join(str(row[k]) for k in ("uid", "source", "domain") if row.get(k))
    body: list[Any] = [Text(_clip(row.get("problem") or row.get("response")))]
    for key in ("answer", "sources"):
        if row.get(key) is not None:
            body.append(Text(f"{key}: {_clip(row[key], 120)}", style="cyan"))
    if row.get("drop_reason"):
        body.append(Text(f"dropped: {row['drop_reason']}", style="bold red"))
        try:
            detail = json.dumps(json.loads(row.get("drop_detail") or "{}"), indent=2, ensure_ascii=False)
        except json.JSONDecodeError:
            detail = str(row.get("drop_detail"))
        body.append(Text(_clip(detail, 1500), style="yellow"))
    return Panel(Group(*body), title=title, title_align="left")
