"""What near-duplicate removal did, in a form a user can check: report.json details, the dedup
section of the run's HTML report, a Markdown summary (Prefect artifact) and a rich view of clusters
(`longcot inspect RUN dedup`).

The details answer the questions a user has before trusting the result: how many rows each method
removed, how big the clusters are, what the largest ones contain (texts side by side), whether the
threshold sits in a gap of the similarity distribution or cuts through a mass of pairs, which pairs
the number guard kept apart, and which sources duplicate which.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stages.dedup.clusters import Pairs, take_rows
from stages.dedup.plots import PLOTS_DIR, plot_pngs
from stages.reports.figures import img
from stages.stage import Details
from stages.store import load_report, read_shards

TEXT_CHARS = 600
MEMBERS_SHOWN = 8
EXAMPLES = 6
CHECK_EXAMPLES = 20  # pairs kept apart by the pair check shown with their texts
CHECK_PAIRS = 1000  # pairs kept apart by the pair check listed (row uids, similarity, rule)
HIST_BINS = 40


class PairCounts(Details):
    candidates: int
    joined: int
    below_threshold: int
    rejected_by_number_guard: int
    kept_by_check: int = 0


class NearDupDetails(Details):
    """report.json details of a near-duplicate stage (schema in docs/dedup.md)."""

    method: str
    threshold: float
    params: dict[str, Any]
    rows_in: int
    rows_removed: int
    clusters_with_duplicates: int
    largest_cluster: int
    cluster_size_histogram: dict[str, int]
    pairs: PairCounts
    kept_by_rule: dict[str, int]
    similarity_histogram: dict[str, Any]
    near_threshold_examples: list[dict[str, Any]]
    number_guard_examples: list[dict[str, Any]]
    pair_check_examples: list[dict[str, Any]]  # the most similar pairs the check kept apart, with texts
    kept_by_check: list[dict[str, Any]]  # more of them, by uid
    largest_clusters: list[dict[str, Any]]
    source_matrix: dict[str, Any]


def near_dup_details(
    input_dir: Path,
    *,
    field: str,
    method: str,
    threshold: float,
    decisions: pl.DataFrame,
    pairs: Pairs,
    top_clusters: int,
    params: dict[str, Any],
) -> NearDupDetails:
    """The details of a near-duplicate stage, with the texts of its largest clusters and examples."""
    sizes = decisions.filter("is_keeper")["group_size"]
    largest = (
        decisions.filter(pl.col("is_keeper") & (pl.col("group_size") > 1))
        .sort(["group_size", "idx"], descending=[True, False])
        .head(top_clusters)["keeper_idx"]
    )
    members = decisions.filter(pl.col("keeper_idx").is_in(largest.implode()))
    members = members.group_by("keeper_idx").head(MEMBERS_SHOWN)
    examples = example_pairs(pairs, threshold)
    checked = check_pairs(pairs)
    wanted = np.unique(
        np.concatenate([members["idx"].to_numpy(), [i for e in examples + checked for i in (e["a"], e["b"])]])
    ).astype(np.int64)
    rows = {r["idx"]: r for r in take_rows(input_dir, wanted, ["uid", "source", field]).iter_rows(named=True)}

    def row(i: int) -> dict[str, Any]:
        r = rows[i]
        return {"idx": i, "uid": r["uid"], "source": r["source"], "text": clip(r[field])}

    clusters_out = []
    for keeper in largest.to_list():
        group = members.filter(pl.col("keeper_idx") == keeper).sort([pl.col("is_keeper").not_(), "idx"])
        clusters_out.append(
            {
                "cluster": keeper,
                "size": int(group["group_size"][0]),
                "members": [
                    {**row(m["idx"]), "keeper": m["is_keeper"], "similarity": m["similarity"]}
                    for m in group.iter_rows(named=True)
                ],
            }
        )
    removed = int((~decisions["is_keeper"]).sum())
    return NearDupDetails(
        method=method,
        threshold=threshold,
        params=params,
        rows_in=decisions.height,
        rows_removed=removed,
        clusters_with_duplicates=int((sizes > 1).sum()),
        largest_cluster=int(sizes.max() or 0),
        cluster_size_histogram={
            str(size): n for size, n in sizes.value_counts().sort("group_size").iter_rows() if size > 1
        },
        pairs=PairCounts(
            candidates=int(pairs.src.size),
            joined=int(pairs.edge.sum()),
            below_threshold=int((pairs.similarity < threshold).sum()),
            rejected_by_number_guard=int((~pairs.numbers_ok & (pairs.similarity >= threshold)).sum()),
            kept_by_check=int(np.not_equal(pairs.kept_by, None).sum()),
        ),
        kept_by_rule=kept_by_rule(pairs, threshold),
        similarity_histogram=similarity_histogram(pairs, threshold),
        near_threshold_examples=[
            {**e, "a": row(e["a"]), "b": row(e["b"])} for e in examples if e["kind"] == "near_threshold"
        ],
        number_guard_examples=[
            {**e, "a": row(e["a"]), "b": row(e["b"])} for e in examples if e["kind"] == "number_guard"
        ],
        pair_check_examples=[{**e, "a": row(e["a"]), "b": row(e["b"])} for e in checked[:CHECK_EXAMPLES]],
        kept_by_check=[
            {**e, "a": rows[e["a"]]["uid"], "b": rows[e["b"]]["uid"]} for e in checked[CHECK_EXAMPLES:]
        ],
        largest_clusters=clusters_out,
        source_matrix=source_matrix(decisions),
    )


def member_label(member: dict[str, Any]) -> str:
    return "KEPT" if member["keeper"] else f"sim {member['similarity']:.3f}"


def clip(text: str | None, limit: int = TEXT_CHARS) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def similarity_histogram(pairs: Pairs, threshold: float) -> dict[str, Any]:
    """Candidate-pair similarities in bins from (threshold - 0.3) to 1, split into pairs joined, pairs
    below the threshold and pairs above it kept apart by the number guard."""
    lo = max(0.0, round(threshold - 0.3, 2))
    edges = np.linspace(lo, 1.0, HIST_BINS + 1)
    sim = np.clip(pairs.similarity, lo, 1.0)
    above = pairs.similarity >= threshold

    def counts(mask: np.ndarray) -> list[int]:
        return np.histogram(sim[mask], bins=edges)[0].astype(int).tolist()

    return {
        "edges": np.round(edges, 4).tolist(),
        "joined": counts(pairs.edge),
        "below_threshold": counts(~above),
        "number_guard": counts(above & ~pairs.numbers_ok),
        "below_range": int((pairs.similarity < lo).sum()),
    }


def example_pairs(pairs: Pairs, threshold: float) -> list[dict[str, Any]]:
    """The pairs closest to the threshold on each side, and the most similar pairs that the number
    guard kept apart: the evidence for or against the chosen threshold."""
    out: list[dict[str, Any]] = []
    gap = np.abs(pairs.similarity - threshold)
    for side in (pairs.similarity >= threshold, pairs.similarity < threshold):
        idx = np.flatnonzero(side & pairs.numbers_ok)
        out += [
            _pair(pairs, i, "near_threshold")
            for i in idx[np.argsort(gap[idx], kind="stable")][: EXAMPLES // 2]
        ]
    guarded = np.flatnonzero(~pairs.numbers_ok & (pairs.similarity >= threshold))
    out += [
        _pair(pairs, i, "number_guard")
        for i in guarded[np.argsort(-pairs.similarity[guarded], kind="stable")][:EXAMPLES]
    ]
    return out


def kept_by_rule(pairs: Pairs, threshold: float) -> dict[str, int]:
    """How many pairs above the threshold each pair-check rule kept apart, the number guard included
    (as `numbers`), most first."""
    counts = {"numbers": int((~pairs.numbers_ok & (pairs.similarity >= threshold)).sum())}
    rules, n = np.unique(pairs.kept_by[np.not_equal(pairs.kept_by, None)].astype(str), return_counts=True)
    counts.update(zip(rules.tolist(), n.tolist(), strict=True))
    return {rule: c for rule, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c}


def check_pairs(pairs: Pairs) -> list[dict[str, Any]]:
    """Pairs the pair check kept apart, most similar first (at most CHECK_PAIRS), with the rule."""
    kept = np.flatnonzero(np.not_equal(pairs.kept_by, None))
    kept = kept[np.argsort(-pairs.similarity[kept], kind="stable")][:CHECK_PAIRS]
    return [{**_pair(pairs, i, "pair_check"), "rule": pairs.kept_by[i]} for i in kept]


def _pair(pairs: Pairs, i: int, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "a": int(pairs.src[i]),
        "b": int(pairs.dst[i]),
        "similarity": round(float(pairs.similarity[i]), 4),
        "joined": bool(pairs.edge[i]),
    }


def source_matrix(decisions: pl.DataFrame) -> dict[str, Any]:
    """counts[i][j]: rows of source j removed as duplicates of a kept row of source i."""
    dropped = decisions.filter(~pl.col("is_keeper"))
    names = sorted(set(decisions["row_source"].drop_nulls().unique().to_list()))
    pos = {s: i for i, s in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=int)
    for kept, removed, n in dropped.group_by("keeper_source", "row_source").len().iter_rows():
        if kept in pos and removed in pos:
            matrix[pos[kept], pos[removed]] = n
    return {"sources": names, "counts": matrix.tolist()}


# --- reading back --------------------------------------------------------------------------------

DEDUP_METHODS = ("exact", "minhash", "embedding")


def dedup_reports(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(stage dir, report.json) of every dedup stage of a run (or of a `longcot dedup --out` dir), in order."""
    found = []
    for stage_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.endswith(".partial")):
        rep = load_report(stage_dir)
        if rep and (rep.get("details") or {}).get("method") in DEDUP_METHODS:
            found.append((stage_dir, rep))
    return found


def read_clusters(stage_dir: Path, n: int = 10, members: int = MEMBERS_SHOWN) -> list[dict[str, Any]]:
    """The n largest clusters of a dedup stage, read back from its shards (works for every method and
    any n, not only the clusters stored in report.json): keeper first, then removed rows with their
    similarity to the keeper."""
    detail = pl.Struct({"duplicate_of": pl.String, "similarity": pl.Float64})
    frames = [
        b.with_columns(pl.col("drop_detail").str.json_decode(detail).alias("d")).unnest("d")
        for b in read_shards(stage_dir / "dropped", columns=["uid", "source", "problem", "drop_detail"])
    ]
    if not frames:
        return []
    dropped = pl.concat(frames)
    sizes = (
        dropped.group_by("duplicate_of").len().sort(["len", "duplicate_of"], descending=[True, False]).head(n)
    )
    keepers = pl.concat(
        [
            b.filter(pl.col("uid").is_in(sizes["duplicate_of"].implode()))
            for b in read_shards(stage_dir / "kept", columns=["uid", "source", "problem"])
        ]
    ).unique("uid", keep="first")
    out = []
    for keeper_uid, removed in sizes.iter_rows():
        keeper = keepers.filter(pl.col("uid") == keeper_uid)
        rows = [{"uid": keeper_uid, "source": None, "text": "", "similarity": 1.0, "keeper": True}]
        if keeper.height:
            rows[0].update(source=keeper["source"][0], text=clip(keeper["problem"][0]))
        for r in dropped.filter(pl.col("duplicate_of") == keeper_uid).head(members - 1).iter_rows(named=True):
            rows.append(
                {
                    "uid": r["uid"],
                    "source": r["source"],
                    "text": clip(r["problem"]),
                    "similarity": r["similarity"],
                    "keeper": False,
                }
            )
        out.append({"cluster": keeper_uid, "size": removed + 1, "members": rows})
    return out


# --- rich (terminal) -----------------------------------------------------------------------------


def format_clusters(stage_dir: Path, n: int = 10, members: int = 5) -> Any:
    """A rich renderable of the n largest clusters of a dedup stage (`longcot inspect RUN dedup`):
    one table per cluster, members side by side, keeper first."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rep = load_report(stage_dir) or {}
    details = rep.get("details") or {}
    title = f"{stage_dir.name}: {details.get('method', '?')} dedup removed {rep.get('rows_dropped', 0):,} of {rep.get('rows_in', 0):,} rows"
    found = read_clusters(stage_dir, n, members)
    if not found:
        return Group(Text(title, style="bold"), Text("no duplicate clusters"))
    tables = []
    for c in found:
        table = Table(title=f"cluster of {c['size']} (keeper {c['cluster']})", expand=True, show_lines=True)
        for m in c["members"]:
            label = member_label(m)
            table.add_column(f"{label}\n{m['source']}", style="green" if m["keeper"] else None, ratio=1)
        table.add_row(*[clip(m["text"], 300) for m in c["members"]])
        tables.append(table)
    return Group(Text(title, style="bold"), *tables)


def summary_rows(reports: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per dedup stage: method, threshold, rows in, removed, clusters, largest, report path."""
    rows = []
    for stage_dir, rep in reports:
        d = rep.get("details") or {}
        rows.append(
            {
                "stage": stage_dir.name,
                "method": d.get("method"),
                "threshold": d.get("threshold", 1.0),
                "rows_in": rep.get("rows_in", 0),
                "removed": rep.get("rows_dropped", 0),
                "clusters": d.get("clusters_with_duplicates", d.get("groups_with_duplicates", 0)),
                "largest": d.get("largest_cluster", d.get("largest_group", 0)),
                "seconds": rep.get("seconds"),
                "report": str(stage_dir / "report.json"),
            }
        )
    return rows


def dedup_markdown(reports: list[tuple[Path, dict[str, Any]]]) -> str:
    """A Markdown summary of the dedup stages, for a Prefect artifact."""
    lines = [
        "| stage | method | threshold | rows in | removed | clusters | largest |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary_rows(reports):
        lines.append(
            f"| {r['stage']} | {r['method']} | {r['threshold']} | {r['rows_in']:,} | {r['removed']:,} | {r['clusters']:,} | {r['largest']} |"
        )
    for stage_dir, rep in reports:
        for c in (rep.get("details") or {}).get("largest_clusters", [])[:3]:
            lines += ["", f"**{stage_dir.name}: cluster of {c['size']}**", ""]
            lines += [
                f"- {member_label(m)} `{m['source']}`: {clip(m['text'], 160).replace(chr(10), ' ')}"
                for m in c["members"][:4]
            ]
    return "\n".join(lines)


# --- HTML (run report) ---------------------------------------------------------------------------


def _plots(stage_dir: Path, details: dict[str, Any]) -> list[str]:
    """The stage's plots as <img> tags: its PNG files, or rendered now for a stage written without them."""
    files = sorted((stage_dir / PLOTS_DIR).glob("*.png"))
    return [img(f.read_bytes()) for f in files] if files else [img(png) for _, png in plot_pngs(details)]


def _cluster_html(cluster: dict[str, Any]) -> str:
    cells = "".join(
        f'<td style="vertical-align:top;background:{"#e8f5e9" if m["keeper"] else "#fff"};border:1px solid #ddd;'
        f'padding:4px;font-size:12px;white-space:pre-wrap;min-width:180px"><b>{member_label(m)}</b>'
        f" · {html.escape(str(m['source']))}<br>{html.escape(m['text'])}</td>"
        for m in cluster["members"]
    )
    return f'<p><b>cluster of {cluster["size"]}</b></p><div style="overflow-x:auto"><table><tr>{cells}</tr></table></div>'


def _pairs_html(title: str, examples: list[dict[str, Any]]) -> str:
    if not examples:
        return ""
    rows = "".join(
        f"<tr><td>{e['similarity']:.3f}</td><td>{'joined' if e['joined'] else 'kept apart'}"
        f"{' by ' + html.escape(e['rule']) if e.get('rule') else ''}</td>"
        f'<td style="white-space:pre-wrap;font-size:12px">{html.escape(e["a"]["text"])}</td>'
        f'<td style="white-space:pre-wrap;font-size:12px">{html.escape(e["b"]["text"])}</td></tr>'
        for e in examples
    )
    return f"<h4>{title}</h4><table border=1 cellspacing=0 cellpadding=3><tr><th>similarity</th><th>outcome</th><th>row A</th><th>row B</th></tr>{rows}</table>"


def render_html(reports: list[tuple[Path, dict[str, Any]]], clusters_shown: int = 5) -> str:
    """The dedup section of the run's HTML report (a fragment; plots inline as base64 PNG)."""
    summary = summary_rows(reports)
    head = "".join(
        f"<th>{h}</th>" for h in ("stage", "method", "threshold", "rows in", "removed", "clusters", "largest")
    )
    body = "".join(
        f"<tr><td>{r['stage']}</td><td>{r['method']}</td><td>{r['threshold']}</td><td>{r['rows_in']:,}</td>"
        f"<td>{r['removed']:,}</td><td>{r['clusters']:,}</td><td>{r['largest']}</td></tr>"
        for r in summary
    )
    parts = [
        f'<section id="dedup"><h2>Deduplication</h2><table border=1 cellspacing=0 cellpadding=3><tr>{head}</tr>{body}</table>'
    ]
    for stage_dir, rep in reports:
        d = rep.get("details") or {}
        parts.append(f"<h3>{html.escape(stage_dir.name)} ({d.get('method')})</h3>")
        if d.get("params"):
            parts.append(
                f"<p><code>{html.escape(json.dumps(d['params']))}</code> · pairs: <code>{html.escape(json.dumps(d.get('pairs', {})))}</code></p>"
            )
        parts.append(
            '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(_plots(stage_dir, d)) + "</div>"
        )
        clusters = d.get("largest_clusters") or read_clusters(stage_dir, clusters_shown)
        parts += [_cluster_html(c) for c in clusters[:clusters_shown]]
        parts.append(_pairs_html("pairs nearest the threshold", d.get("near_threshold_examples", [])))
        parts.append(
            _pairs_html("similar pairs kept apart by the number guard", d.get("number_guard_examples", []))
        )
        if d.get("kept_by_rule"):
            rules = ", ".join(f"{rule} {n:,}" for rule, n in d["kept_by_rule"].items())
            parts.append(f"<p>pairs above the threshold kept apart, by rule: {html.escape(rules)}</p>")
        parts.append(
            _pairs_html("similar pairs kept apart by the pair check", d.get("pair_check_examples", []))
        )
    parts.append("</section>")
    return "\n".join(parts)


def html_page(fragment: str, title: str = "longcot dedup report") -> str:
    """A standalone page around a fragment (for `longcot dedup --out DIR`)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:1400px;margin:auto'>{fragment}</body></html>\n"
    )


def stage_html(stage_dir: Path) -> str:
    """The HTML fragment of one dedup stage (the registry's per-stage `html` hook)."""
    rep = load_report(stage_dir)
    return render_html([(stage_dir, rep)]) if rep else ""
