"""runs/<run>/report.html: one self-contained page (plots inlined) summarising a run.

Sections: the funnel, drop reasons per stage, per-source counts, problem lengths, and any section a
stage kind contributes (dedup clusters, contamination) through `StageKind.html`.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from flows.plots import funnel, histogram, stacked_reasons
from flows.registry import STAGES
from stages.store import load_report, read_shards

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{margin-bottom:.2em} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1em 0;font-size:14px} th,td{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left} .ok{color:#2a7}.bad{color:#c33}
section{margin:2em 0} .grid{display:flex;flex-wrap:wrap;gap:1em} img{max-width:100%}
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(f'{c:,}' if isinstance(c, int) else str(c))}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _lengths(kept_dir: Path) -> list[int]:
    lengths: list[int] = []
    for batch in read_shards(kept_dir, columns=["problem"]):
        lengths.extend(batch["problem"].str.len_chars().to_list())
    return lengths


def render(run_dir: Path, manifest: dict[str, Any]) -> str:
    stages = manifest["stages"]
    names = [s["dir"] for s in stages]
    parts = [
        f"<h1>longcot run <code>{html.escape(manifest['run'])}</code></h1>",
        f"<p class=meta>status <b class={'ok' if manifest['status'] == 'succeeded' else 'bad'}>{manifest['status']}</b>"
        f" · started {manifest['started_at']} · finished {manifest['finished_at']}"
        f" · recipe {html.escape(str(manifest.get('recipe_file')))}</p>",
    ]
    if manifest.get("error"):
        parts.append(f"<p class=bad>{html.escape(manifest['error'])}</p>")
    if stages:
        parts.append("<section><h2>Funnel</h2><div class=grid>")
        parts.append(funnel(names, [s["rows_kept"] for s in stages], stages[0]["rows_in"]))
        parts.append(stacked_reasons(names, [s["drop_reasons"] for s in stages]))
        parts.append("</div>")
        parts.append(
            _table(
                ["stage", "in", "kept", "dropped", "reasons", "seconds", "cached"],
                [
                    [
                        s["dir"],
                        s["rows_in"],
                        s["rows_kept"],
                        s["rows_dropped"],
                        ", ".join(f"{r}: {n:,}" for r, n in s["drop_reasons"].items()) or "–",
                        s["seconds"],
                        "yes" if s["cached"] else "",
                    ]
                    for s in stages
                ],
            )
        )
        parts.append("</section>")
    collect = load_report(run_dir / stages[0]["dir"]) if stages else None
    if collect:
        rows = [
            [
                name,
                c.get("rows", 0),
                c.get("kept", 0),
                c.get("with_answer", 0),
                c.get("answer_extracted", 0),
                ", ".join(
                    f"{k.removeprefix('dropped:')}: {v}" for k, v in c.items() if k.startswith("dropped:")
                )
                or "–",
            ]
            for name, c in collect["details"]["sources"].items()
        ]
        parts.append("<section><h2>Sources</h2>")
        parts.append(_table(["source", "rows", "kept", "with answer", "answer extracted", "dropped"], rows))
        parts.append("</section>")
        last = run_dir / stages[-1]["dir"] / "kept"
        lengths = _lengths(last)
        if lengths:
            parts.append("<section><h2>Problem length</h2>")
            parts.append(
                histogram(lengths, f"Problem length after {stages[-1]['dir']}", "characters", log=True)
            )
            parts.append("</section>")
    for s in stages:
        kind = STAGES.get(s["stage"])
        if kind is not None and kind.html is not None:
            parts.append(
                f"<section><h2>{html.escape(s['dir'])}</h2>{kind.html(run_dir / s['dir'])}</section>"
            )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>longcot {html.escape(manifest['run'])}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_report(run_dir: Path, manifest: dict[str, Any]) -> Path:
    path = run_dir / "report.html"
    path.write_text(render(run_dir, manifest))
    return path
