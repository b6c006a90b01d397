"""The contamination report: report.json details, an HTML section (inline plots) for the run report
and the audit's report.html, and a Markdown table for the Prefect artifact.

It answers what a user asks before trusting a set: which benchmarks leak into it, how many of each
benchmark's items, how many training rows were removed, the matched pairs side by side, and whether
the thresholds sit in a gap or cut through a mass of near misses.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stages.reports.figures import img, png
from stages.store import load_report

TEXT_CHARS = 400
PAIRS_SHOWN = 60
MD_CHARS = 160  # text clipped in Markdown cells
NEAR_SHOWN_MD = 10


def summarise(
    *,
    config: Any,
    benchmarks: Any,
    items: pl.DataFrame,
    hits: pl.DataFrame,
    flagged_rows: pl.DataFrame,
    near: dict[str, dict[str, Any]],
    rows_in: int,
    texts: pl.DataFrame,
) -> dict[str, Any]:
    """report.json details (schema in docs/decontamination.md). `texts` (row, uid, text) holds the
    training text of every flagged row and of every near-miss example."""
    per_benchmark = {}
    for name, origin in benchmarks.origins.items():
        mine = hits.filter(pl.col("benchmark") == name)
        per_benchmark[name] = {
            **origin,
            "items": origin["rows"],
            "items_found": mine["item"].n_unique(),
            "rows_removed": mine["row"].n_unique(),
            "rows_by_method": {
                m: g["row"].n_unique() for (m,), g in mine.group_by("method", maintain_order=True)
            },
        }
    bench_text = items.select(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("item"),
        pl.col("problem").str.slice(0, TEXT_CHARS).alias("benchmark_problem"),
    )
    listed = (
        hits.join(flagged_rows, on="row", how="left")
        .join(bench_text, on="item", how="left")
        .sort(["benchmark", "row", "score", "item"], descending=[False, False, True, False])
    )
    hit_list = (
        listed.head(config.max_report_hits)
        .select(
            "row",
            "uid",
            "benchmark",
            "benchmark_id",
            "method",
            pl.col("score").round(4),
            "shared",
            "evidence",
            pl.col("text").alias("problem"),
            "benchmark_problem",
        )
        .to_dicts()
    )
    return {
        "methods": list(config.methods),
        "rows_in": rows_in,
        "rows_flagged": flagged_rows.height,
        "benchmarks": per_benchmark,
        "hits": hit_list,
        "hits_total": hits.height,
        "hits_truncated": hits.height > len(hit_list),
        "near_misses": {m: _near(v, items, texts) for m, v in near.items()},
        "thresholds": _thresholds(config),
    }


def _thresholds(config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "ngram" in config.methods:
        out["ngram"] = config.ngram.model_dump(mode="json")
    if {"embedding", "llm"} & set(config.methods):
        out["embedding"] = {"model": config.embedding.model, "threshold": config.embedding.threshold}
    if "llm" in config.methods:
        out["llm"] = {"min_score": config.judge.min_score, "max_pairs": config.judge.max_pairs}
    if "fuzzy" in config.methods:
        out["fuzzy"] = {"threshold": config.fuzzy.threshold}
    return out


def _near(near: dict[str, Any], items: pl.DataFrame, texts: pl.DataFrame) -> dict[str, Any]:
    """Near misses of one method: the flag rule, score quantiles, and the best-scoring kept pairs with
    both texts and the rule that kept each."""
    by_row = {r: (u, t) for r, u, t in texts.select("row", "uid", "text").iter_rows()}
    examples = []
    for ex in near["examples"]:
        item = items.row(ex["item"], named=True)
        uid, text = by_row.get(ex["row"], (None, None))
        examples.append(
            {
                "row": ex["row"],
                "uid": uid,
                "benchmark": item["benchmark"],
                "benchmark_id": item["benchmark_id"],
                "score": round(ex["score"], 4),
                **({"shared": ex["shared"]} if "shared" in ex else {}),
                "rule": ex["rule"],
                "reason": ex["reason"],
                "problem": text,
                "benchmark_problem": item["problem"][:TEXT_CHARS],
            }
        )
    scores = np.asarray(near["scores"], dtype=float)
    return {
        "metric": near["metric"],
        "threshold": near["threshold"],
        "rule": near["rule"],
        "count": int(scores.size),
        "quantiles": {str(q): round(float(np.quantile(scores, q)), 4) for q in (0.5, 0.9, 0.99)}
        if scores.size
        else {},
        "scores": near["scores"][:5_000],
        "examples": examples,
    }


# --- rendering ------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    data = png(fig, dpi=90)
    plt.close(fig)
    return img(data, "plot")


def _per_benchmark_plot(details: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(details["benchmarks"])
    found = [details["benchmarks"][n]["items_found"] for n in names]
    removed = [details["benchmarks"][n]["rows_removed"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.barh(y - 0.2, found, height=0.4, label="benchmark items found")
    ax.barh(y + 0.2, removed, height=0.4, label="training rows removed")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("count")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _score_plot(details: dict[str, Any], method: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    near = details["near_misses"][method]
    flagged = [h["score"] for h in details["hits"] if h["method"] == method]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    bins = np.linspace(0, 1, 51)
    ax.hist(near["scores"], bins=bins, alpha=0.7, label="near misses (kept)")
    ax.hist(flagged, bins=bins, alpha=0.7, label="flagged")
    ax.axvline(near["threshold"], color="red", linestyle="--", label=f"threshold {near['threshold']}")
    ax.set_xlabel(near["metric"])
    ax.set_ylabel("rows")
    if near["scores"] or flagged:  # a log axis over no bars is matplotlib's warning, not a chart
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"{method}: best score per row")
    return _png(fig)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_section(details: dict[str, Any]) -> str:
    """The contamination section of an HTML report: a fragment with inline PNG plots."""
    rows = "".join(
        f"<tr><td>{_esc(n)}</td><td>{b['items']}</td><td>{b['items_found']}</td><td>{b['rows_removed']}</td>"
        f"<td>{_esc(', '.join(f'{m}: {c}' for m, c in b['rows_by_method'].items()))}</td>"
        f"<td>{_esc(b['source'])}: {_esc(b['location'])}</td></tr>"
        for n, b in details["benchmarks"].items()
    )
    table = (
        "<table><tr><th>benchmark</th><th>items</th><th>items found in training data</th>"
        "<th>training rows removed</th><th>by method</th><th>loaded from</th></tr>" + rows + "</table>"
    )
    pairs = "".join(
        f"<tr><td>{_esc(h['benchmark'])}/{_esc(h['benchmark_id'])}<br/><small>{_esc(h['method'])} "
        f"{h['score']}</small></td><td>{_esc(h['benchmark_problem'])}</td><td>row {h['row']}<br/>"
        f"{_esc(h['problem'])}</td><td><small>{_esc(h['evidence'])}</small></td></tr>"
        for h in details["hits"][:PAIRS_SHOWN]
    )
    plots = [_per_benchmark_plot(details)] + [_score_plot(details, m) for m in details["near_misses"]]
    near_tables = "".join(_near_table(m, v) for m, v in details["near_misses"].items())
    return (
        '<section class="contamination"><h2>Benchmark contamination</h2>'
        f"<p>{details['rows_flagged']:,} of {details['rows_in']:,} rows flagged "
        f"(methods: {_esc(', '.join(details['methods']))}).</p>{table}<div>{''.join(plots)}</div>"
        f"<h3>Matched pairs (first {PAIRS_SHOWN} of {details['hits_total']:,})</h3>"
        "<table><tr><th>benchmark item</th><th>benchmark problem</th><th>training row</th><th>evidence</th></tr>"
        f"{pairs}</table>{near_tables}</section>"
    )


def near_heading(method: str, near: dict[str, Any]) -> str:
    """What the near-miss table holds, with the real flag rule (not a bare threshold)."""
    return (
        f"Near misses, {method}: {near['count']:,} rows kept whose best pair was not flagged "
        f"(highest {near['metric']} first); a pair is flagged at {near['rule']}"
    )


def _near_table(method: str, near: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{e['score']}</td><td><b>{_esc(e['rule'])}</b><br/><small>{_esc(e['reason'])}</small></td>"
        f"<td>row {e['row']}<br/>{_esc(e['problem'])}</td>"
        f"<td>{_esc(e['benchmark'])}/{_esc(e['benchmark_id'])}<br/>{_esc(e['benchmark_problem'])}</td></tr>"
        for e in near["examples"]
    )
    return (
        f"<h3>{_esc(near_heading(method, near))}</h3><table><tr><th>{_esc(near['metric'])}</th>"
        f"<th>kept by</th><th>training text</th><th>benchmark item</th></tr>{rows}</table>"
    )


def render_page(details: dict[str, Any], title: str) -> str:
    """A self-contained report.html for the audit command."""
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}th{background:#f3f3f3}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{style}</style>"
        f"</head><body><h1>{_esc(title)}</h1>{render_section(details)}</body></html>"
    )


def stage_html(stage_dir: Path) -> str:
    """The section for a finished stage directory (the run report's per-stage hook)."""
    report = load_report(stage_dir)
    return render_section(report["details"]) if report and report.get("details", {}).get("benchmarks") else ""


def markdown_summary(details: dict[str, Any]) -> str:
    """Per-benchmark table as Markdown (a Prefect table/markdown artifact)."""
    lines = [
        f"**{details['rows_flagged']:,} of {details['rows_in']:,} rows contaminated** ({', '.join(details['methods'])})",
        "",
        "| benchmark | items | items found | rows removed |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {b['items']} | {b['items_found']} | {b['rows_removed']} |"
        for n, b in details["benchmarks"].items()
    ]
    for method, near in details["near_misses"].items():
        lines += [
            "",
            f"**{near_heading(method, near)}**",
            "",
            f"| {near['metric']} | kept by | why | training text | benchmark item | benchmark text |",
            "|---:|---|---|---|---|---|",
        ]
        lines += [
            f"| {e['score']} | {e['rule']} | {_cell(e['reason'])} | {_cell(e['problem'], MD_CHARS)} | "
            f"{e['benchmark']}/{e['benchmark_id']} | {_cell(e['benchmark_problem'], MD_CHARS)} |"
            for e in near["examples"][:NEAR_SHOWN_MD]
        ]
    return "\n".join(lines)


def _cell(text: str | None, chars: int = 1_000) -> str:
    """Text clipped for a Markdown table cell: one line, pipes escaped."""
    flat = " ".join((text or "").split())
    return (flat[:chars] + ("…" if len(flat) > chars else "")).replace("|", "\\|")
