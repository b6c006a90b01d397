"""The one table helper: a header and rows, rendered as HTML (report.html), Markdown (the dataset
card, Prefect artifacts) or a rich table (the CLI). A fact shown in several places is built once."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any


def is_number(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    text = str(value)
    return text.lstrip("$").replace(",", "").replace(".", "", 1).isdigit()


def cell_text(value: Any) -> str:
    """Integers with thousands separators, None as a dash, everything else as text."""
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,}"
    return str(value)


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    title: str | None = None

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td{' class=n' if v is not None and is_number(v) else ''}>{html.escape(cell_text(v))}</td>"
                for v in row
            )
            + "</tr>"
            for row in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<div class=wide><table>{caption}<tr>{head}</tr>{body}</table></div>"

    def markdown(self) -> str:
        def cell(v: Any) -> str:
            return cell_text(v).replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(([f"**{self.title}**", ""] if self.title else []) + lines)

    def rich(self) -> Any:
        from rich.table import Table as RichTable

        table = RichTable(title=self.title, title_justify="left")
        numeric = [
            bool(self.rows) and all(r[i] is None or is_number(r[i]) for r in self.rows)
            for i in range(len(self.header))
        ]
        for name, right in zip(self.header, numeric, strict=True):
            table.add_column(name, justify="right" if right else "left")
        for row in self.rows:
            table.add_row(*(cell_text(v) for v in row))
        return table


def stage_counts(stages: list[dict[str, Any]], timings: bool = True, title: str | None = None) -> Table:
    """The funnel of a run (manifest stage entries) as one table: in, kept, dropped, reasons, time."""
    header = ["stage", "in", "kept", "dropped", "dropped by reason"]
    rows = []
    for s in stages:
        reasons = ", ".join(f"{r} {n:,}" for r, n in s["drop_reasons"].items()) or "–"
        row = [s["dir"], s["rows_in"], s["rows_kept"], s["rows_dropped"], reasons]
        if timings:
            row += [f"{s['seconds']:.1f}s", "cached" if s.get("cached") else ""]
        rows.append(row)
    return Table(header + (["time", ""] if timings else []), rows, title)
