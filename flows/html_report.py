"""runs/<run>/report.html: one self-contained page (plots inlined) summarising a run; and its card.

Sections: the funnel, drop reasons per stage, per-source breakdown across stages, problem lengths,
teacher cost and tokens, verification accuracy, reasoning lengths, pass rates, the exported sets, and
any section a stage kind contributes (dedup clusters, contamination) through `StageKind.html`.

`write_report` also writes the dataset card (runs/<run>/card/README.md and its images) when the run
has a finished export stage; `flows.push` publishes that card with the shards.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from flows.plots import funnel, histogram, img, overlaid_histogram, pass_rate_histogram, stacked_reasons
from stages.collect.stage import CollectDetails
from stages.decontam import markdown_summary as decontam_markdown
from stages.decontam import stage_html as decontam_html
from stages.dedup.report import stage_html as dedup_html
from stages.export import ExportDetails
from stages.passrate import rate_values
from stages.registry import read_report
from stages.reports.card import CARD, export_dir, pass_rate_details, render_card, sample_totals
from stages.reports.table import Table, stage_counts
from stages.runner import StepResult
from stages.store import load_report, shard_paths

CARD_DIR = "card"
# sections a stage contributes to the page, from its directory (they bring their own headings)
FRAGMENTS: dict[str, Callable[[Path], str]] = {
    "minhash_dedup": dedup_html,
    "embedding_dedup": dedup_html,
    "decontaminate": decontam_html,
}
MARKDOWN: dict[str, Callable[[dict[str, Any]], str]] = {"decontaminate": decontam_markdown}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{margin-bottom:.2em} .meta{color:#666;margin-top:0} h2{border-bottom:1px solid #eee;padding-bottom:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:14px} th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} th{background:#fafafa} .ok{color:#2a7}.bad{color:#c33}
section{margin:2em 0} .grid{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start} img{max-width:100%}
.grid img{max-width:calc(50% - .5em)} th{vertical-align:bottom}
.note{color:#555;font-size:14px} .wide{overflow-x:auto} section{overflow-x:auto}
pre,code{white-space:pre-wrap;overflow-wrap:anywhere}
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    return Table(header, rows).html()


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def _stages_of(manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in manifest["stages"] if s["stage"] == kind]


def _column(directory: Path, column: str) -> pl.Series | None:
    """One column of a shard directory, or of its split subdirectories (sft/train/, sft/validation/);
    None when there are no shards or they lack the column."""
    dirs = [directory, *sorted(p for p in directory.glob("*") if p.is_dir())] if directory.is_dir() else []
    paths = [p for d in dirs for p in shard_paths(d)]
    if not paths or column not in pl.read_parquet_schema(paths[0]):
        return None
    return pl.concat([pl.read_parquet(p, columns=[column])[column] for p in paths])


# ---- sections ----


def funnel_section(stages: list[dict[str, Any]]) -> str:
    names = [s["dir"] for s in stages]
    charts = img(funnel(names, [s["rows_kept"] for s in stages], stages[0]["rows_in"]), "funnel") + img(
        stacked_reasons(names, [s["drop_reasons"] for s in stages]), "drop reasons"
    )
    return _section(
        "Funnel",
        f"<div class=grid>{charts}</div>",
        stage_counts(stages).html(),
        "<p class=note>Generation stages count samples (problems × n), the others problems.</p>",
    )


def source_breakdown(run_dir: Path, stages: list[dict[str, Any]]) -> str:
    """Kept rows per source after each stage (and RL problems per source), from the shards' `source`."""
    counts: dict[str, dict[str, int]] = {}
    columns = [s["dir"] for s in stages]
    for s in stages:
        sources = _column(run_dir / s["dir"] / "kept", "source")
        if sources is not None:
            for name, n in sources.value_counts().iter_rows():
                counts.setdefault(name or "?", {})[s["dir"]] = n
    export = [s for s in stages if s["stage"] == "export"]
    if export:
        rl = _column(run_dir / export[-1]["dir"] / "rl", "extra_info")  # data_source is verl's reward key
        if rl is not None:
            columns.append("RL set")
            for name, n in rl.struct.field("source").value_counts().iter_rows():
                counts.setdefault(name or "?", {})["RL set"] = n
    rows = [[name, *(per.get(c, 0) for c in columns)] for name, per in sorted(counts.items())]
    rows.append(["total", *(sum(per.get(c, 0) for per in counts.values()) for c in columns)])
    return _section(
        "Per source",
        _table(["source", *(c.replace("-", " ").replace("_", " ") for c in columns)], rows),
        "<p class=note>Rows kept after each stage. Generation rows are samples; the export's kept rows are "
        "the SFT examples; the last column counts RL problems.</p>",
    )


def collect_section(run_dir: Path, stages: list[dict[str, Any]]) -> str:
    collect = next((read_report(run_dir / s["dir"]) for s in stages if s["stage"] == "collect"), None)
    if collect is None:
        return ""
    details = collect.typed_details(CollectDetails)
    assert isinstance(details, CollectDetails)
    rows = [
        [
            name,
            c.rows,
            c.kept,
            c.with_answer,
            c.answer_extracted,
            ", ".join(f"{k}: {v}" for k, v in c.dropped.items()) or "–",
        ]
        for name, c in details.sources.items()
    ]
    parts = [_table(["source", "rows", "kept", "with answer", "answer extracted", "dropped"], rows)]
    problem_stages = [s for s in stages if s["stage"] not in ("generate", "verify", "pass_rate", "export")]
    last = problem_stages[-1]["dir"]  # collect at least
    lengths = _column(run_dir / last / "kept", "problem")
    if lengths is not None and lengths.len():
        chart = histogram(
            lengths.str.len_chars().to_list(), f"Problem length after {last}", "characters", log=True
        )
        parts.append(img(chart, "problem lengths"))
    return _section("Sources", *parts)


def teacher_section(run_dir: Path, manifest: dict[str, Any]) -> str:
    rows, notes = [], []
    for s in _stages_of(manifest, "generate"):
        d = (load_report(run_dir / s["dir"]) or {}).get("details", {})
        t = sample_totals(run_dir / s["dir"])
        rows.append(
            [
                s["dir"],
                f"{d.get('model')} ({d.get('backend')})",
                t["samples"],
                t["prompt_tokens"],
                t["completion_tokens"],
                f"${t['cost_usd'] or 0:.4f}",
            ]
        )
        notes.append(
            f"{s['dir']} this run: {d.get('samples_generated', 0):,} samples requested "
            f"({d.get('tokens_out', 0):,} completion tokens, ${d.get('cost_usd', 0):.4f}), "
            f"{d.get('cache_hits', 0):,} from the sample cache, {d.get('samples_failed', 0):,} failed; "
            f"{d.get('wall_s')} s wall."
        )
    if not rows:
        return ""
    return _section(
        "Teacher: cost and tokens",
        _table(["stage", "teacher", "samples", "prompt tokens", "completion tokens", "cost"], rows),
        f"<p class=note>All samples of the set, tokens as the teacher's server counted them, cost at the "
        f"recipe's prices, whether paid now or by an earlier run. {html.escape(' '.join(notes))}</p>",
    )


def verify_section(run_dir: Path, manifest: dict[str, Any]) -> str:
    parts = []
    for s in _stages_of(manifest, "verify"):
        d = (load_report(run_dir / s["dir"]) or {}).get("details", {})
        rows = [
            [
                src,
                c["rows"],
                c["kept"],
                c["verified"],
                c["correct"],
                f"{c['accuracy']:.1%}" if c["accuracy"] is not None else None,
            ]
            for src, c in d.get("accuracy_by_source", {}).items()
        ]
        parts.append(_table(["source", "samples", "kept", "verified", "correct", "accuracy"], rows))
        kept = run_dir / s["dir"] / "kept"
        tokens, correct = _column(kept, "completion_tokens"), _column(kept, "correct")
        if tokens is not None and correct is not None:
            frame = pl.DataFrame({"t": tokens, "c": correct}).drop_nulls("t")
            chart = overlaid_histogram(
                {
                    "correct": frame.filter(pl.col("c").fill_null(False))["t"].to_list(),
                    "incorrect": frame.filter(~pl.col("c").fill_null(False) & pl.col("c").is_not_null())[
                        "t"
                    ].to_list(),
                    "no verdict": frame.filter(pl.col("c").is_null())["t"].to_list(),
                },
                "Reasoning length of verified samples",
                "completion tokens (teacher's count)",
            )
            parts.append(img(chart, "reasoning lengths"))
    return _section("Verification and reasoning length", *parts) if parts else ""


def pass_rate_charts(run_dir: Path, manifest: dict[str, Any]) -> list[bytes]:
    return [
        pass_rate_histogram(rate_values(d), d.low, d.high, f"Pass rate per problem ({d.rated_by} samples)")
        for _, d in pass_rate_details(run_dir, manifest)
    ]


def pass_rate_section(run_dir: Path, manifest: dict[str, Any]) -> str:
    parts = []
    for name, d in pass_rate_details(run_dir, manifest):
        rows = [
            [r.n_correct, r.n_samples, f"{r.n_correct / r.n_samples:.2f}", r.problems] for r in d.rate_counts
        ]
        parts.append(
            f"<p>{html.escape(name)}: rated by <b>{html.escape(d.rated_by)}</b>; kept "
            f"{d.low} ≤ pass rate ≤ {d.high}. Problems: "
            + html.escape(", ".join(f"{k} {v:,}" for k, v in d.problems.model_dump().items()))
            + "</p>"
        )
        parts.append(_table(["correct", "samples", "pass rate", "problems"], rows))
        if d.student is not None and len(d.student.rounds) > 1:
            st = d.student
            saved = 1 - st.samples_drawn / max(st.samples_without_early_stop, 1)
            parts.append(
                f"<p class=note>Adaptive sampling, rounds {st.rounds}: {st.samples_drawn:,} student samples "
                f"drawn of {st.samples_without_early_stop:,} ({saved:.0%} saved); problems settled per round "
                f"{st.decided_per_round}.</p>"
            )
    charts = "".join(img(c, "pass rates") for c in pass_rate_charts(run_dir, manifest))
    return _section("Difficulty: pass rates", *parts, charts) if parts else ""


def export_details(run_dir: Path, manifest: dict[str, Any]) -> ExportDetails | None:
    export = export_dir(run_dir, manifest)
    report = read_report(export) if export is not None else None
    return report.details if report is not None else None


def sft_length_chart(run_dir: Path, manifest: dict[str, Any]) -> bytes | None:
    export, d = export_dir(run_dir, manifest), export_details(run_dir, manifest)
    if export is None or d is None:
        return None
    tokens = _column(export / "sft", "num_tokens")
    if tokens is None or tokens.len() == 0:
        return None
    label = d.tokens.tokenizer.split(":")[0]
    return histogram(tokens.to_list(), f"SFT example length ({label})", "tokens", bins=30)


def export_section(run_dir: Path, manifest: dict[str, Any]) -> str:
    d = export_details(run_dir, manifest)
    if d is None:
        return ""
    rows = [
        [
            name,
            split,
            s.rows,
            s.shards,
            s.tokens.total,
            s.tokens.mean,
            s.tokens.p50,
            s.tokens.p90,
            s.tokens.max,
        ]
        for name, sets in d.sets.items()
        for split, s in sets.items()
    ]
    parts = [
        _table(["set", "split", "rows", "shards", "tokens", "mean", "p50", "p90", "max"], rows),
        f"<p class=note>Tokens counted by <b>{html.escape(d.tokens.tokenizer)}</b>"
        f" ({d.tokens.estimated_texts:,} texts estimated). SFT: whole conversation; RL: prompt. "
        f"Format: {html.escape(d.format)}; problems without ground truth left out of RL: "
        f"{d.rl_excluded.no_ground_truth:,}.</p>",
    ]
    chart = sft_length_chart(run_dir, manifest)
    if chart is not None:
        parts.append(img(chart, "SFT lengths"))
    if (run_dir / CARD_DIR / CARD).is_file():
        parts.append(f"<p>Dataset card: <code>{html.escape(str(run_dir / CARD_DIR / CARD))}</code></p>")
    return _section("Exported sets", *parts)


def render(run_dir: Path, manifest: dict[str, Any]) -> str:
    stages = manifest["stages"]
    parts = [
        f"<h1>longcot run <code>{html.escape(manifest['run'])}</code></h1>",
        f"<p class=meta>status <b class={'ok' if manifest['status'] == 'succeeded' else 'bad'}>{manifest['status']}</b>"
        f" · started {manifest['started_at']} · finished {manifest['finished_at']}"
        f" · recipe {html.escape(str(manifest.get('recipe_file')))}</p>",
    ]
    if manifest.get("error"):
        parts.append(f"<p class=bad>{html.escape(manifest['error'])}</p>")
    if stages:
        parts += [
            funnel_section(stages),
            source_breakdown(run_dir, stages),
            collect_section(run_dir, stages),
            teacher_section(run_dir, manifest),
            verify_section(run_dir, manifest),
            pass_rate_section(run_dir, manifest),
            export_section(run_dir, manifest),
        ]
    for s in stages:
        fragment = FRAGMENTS.get(s["stage"])
        if fragment is not None and (run_dir / s["dir"]).is_dir():
            parts.append(f"<section>{fragment(run_dir / s['dir'])}</section>")  # brings its own headings
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>longcot {html.escape(manifest['run'])}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def stage_markdown(result: StepResult) -> str:
    """One stage's counts (and its own summary, where it has one) as Markdown, for a Prefect artifact."""
    r = result.report
    entry = {"dir": result.out_dir.name, **r.model_dump(), "cached": result.cached}
    text = f"### {result.out_dir.name}\n\n" + stage_counts([entry]).markdown() + "\n"
    summary = MARKDOWN.get(r.stage)
    return text + ("\n" + summary(r.model_dump(mode="json")["details"]) if summary else "")


def funnel_markdown(manifest: dict[str, Any]) -> str:
    """The run's funnel as Markdown, for a run-level Prefect artifact."""
    return f"### {manifest['run']}: {manifest['status']}\n\n" + stage_counts(manifest["stages"]).markdown()


def write_card(run_dir: Path, manifest: dict[str, Any]) -> Path | None:
    """runs/<run>/card/README.md with its histogram images (None when the run exported nothing)."""
    if export_dir(run_dir, manifest) is None:
        return None
    card_dir = run_dir / CARD_DIR
    (card_dir / "images").mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    charts = {
        "pass_rate": next(iter(pass_rate_charts(run_dir, manifest)), None),
        "lengths": sft_length_chart(run_dir, manifest),
    }
    for name, chart in charts.items():
        path = card_dir / "images" / f"{name}.png"
        if chart is None:
            path.unlink(missing_ok=True)
            continue
        path.write_bytes(chart)
        images[name] = f"images/{name}.png"
    path = card_dir / CARD
    path.write_text(render_card(run_dir, manifest, images))
    return path


def write_report(run_dir: Path, manifest: dict[str, Any]) -> Path:
    write_card(run_dir, manifest)
    path = run_dir / "report.html"
    path.write_text(render(run_dir, manifest))
    return path
