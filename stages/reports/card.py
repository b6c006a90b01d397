"""The dataset card (README.md) of a finished run: what `datasets` reads, and what a user must know.

The YAML header declares one config per exported set (`sft`, the default, and `rl`) with its
data_files per split, as `datasets.load_dataset(repo, "rl")` reads them. The body gives provenance
and licence per source, counts per stage, dedup and contamination results, the teacher, verification,
pass rates and lengths (histogram images the caller renders), and the recipe that made it.

File names in the pushed tree are fixed here (`data_file`), so the card and the push agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from stages.decontam import markdown_summary as decontam_markdown
from stages.dedup.report import dedup_markdown, dedup_reports
from stages.export import ExportDetails
from stages.export.layout import README, SETS, dataset_configs, yaml_header
from stages.passrate import PassRateDetails
from stages.registry import read_report
from stages.reports.table import Table, stage_counts
from stages.stage import StageReport
from stages.store import load_report, shard_paths

CARD = README  # the pushed tree's card has the export root's name
PUSHED_FILES = "{name}/{split}-*.parquet"  # data_file's names, as globs per split

# Known presets (data/mappings.yaml) -> (upstream repository, licence stated upstream, HF licence id).
# From ../shared/data/README.md; anything else is "unknown" until someone checks.
LICENCES: dict[str, tuple[str, str, str]] = {
    "deepscaler_train_aime": ("agentica-project/deepscaler", "MIT", "mit"),
    "deepscaler_train_math": ("agentica-project/deepscaler (MATH train split)", "MIT", "mit"),
    "omni_math_rule": ("KbsdJames/omni-math-rule", "unknown (none stated for the data)", "unknown"),
    "gsm8k_train": ("openai/grade-school-math", "MIT", "mit"),
    "mbpp_full": ("deepseek-ai/DeepSeek-Coder (MBPP)", "CC-BY-4.0 (MBPP); code MIT", "cc-by-4.0"),
    "deepcoder_train_leetcode": ("agentica-project/rllm", "MIT", "mit"),
    "deepcoder_train_livecodebench": ("agentica-project/rllm (LiveCodeBench problems)", "MIT", "mit"),
}
UNKNOWN = ("?", "unknown", "unknown")


def data_file(name: str, split: str, index: int, total: int) -> str:
    """Path of one shard in the pushed tree: <set>/<split>-00000-of-00002.parquet."""
    return f"{name}/{split}-{index:05d}-of-{total:05d}.parquet"


def export_dir(run_dir: Path, manifest: dict[str, Any]) -> Path | None:
    """The last export stage of the run, if it finished."""
    dirs = [run_dir / s["dir"] for s in manifest["stages"] if s["stage"] == "export"]
    return dirs[-1] if dirs and (dirs[-1] / "report.json").is_file() else None


def exported_splits(export: Path) -> dict[str, dict[str, list[Path]]]:
    """{set: {split: shard paths}} of an export stage directory (empty splits left out)."""
    found: dict[str, dict[str, list[Path]]] = {}
    for name in SETS:
        root = export / name
        splits = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        found[name] = {s.name: shard_paths(s) for s in splits if shard_paths(s)}
    return found


def _header(run: str, recipe: dict[str, Any], splits: dict[str, dict[str, list[Path]]], rows: int) -> str:
    configs = dataset_configs({name: list(per) for name, per in splits.items()}, PUSHED_FILES)
    ids = {LICENCES.get(s.get("preset") or "", UNKNOWN)[2] for s in recipe.get("sources", [])}
    header = {
        "pretty_name": run,
        "license": ids.pop() if len(ids) == 1 and "unknown" not in ids else "other",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["reasoning", "chain-of-thought", "synthetic", "longcot"],
        "size_categories": [_size_category(rows)],
        "configs": configs,
    }
    return yaml_header(header)


def _size_category(rows: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if rows < limit:
            return label
    return "n>1M"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    return Table(header, rows).markdown()


def _reports(run_dir: Path, manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for s in manifest["stages"] if s["stage"] == kind and (r := load_report(run_dir / s["dir"]))]


def pass_rate_details(run_dir: Path, manifest: dict[str, Any]) -> list[tuple[str, PassRateDetails]]:
    """(stage directory name, details) of every finished pass_rate stage of the run."""
    return [
        (s["dir"], report.details)
        for s in manifest["stages"]
        if s["stage"] == "pass_rate" and (report := read_report(run_dir / s["dir"]))
    ]


def _provenance(run_dir: Path, manifest: dict[str, Any]) -> str:
    collect = _reports(run_dir, manifest, "collect")
    counts = collect[0]["details"]["sources"] if collect else {}
    rows = []
    for spec in manifest["recipe"].get("sources", []):
        upstream, licence, _ = LICENCES.get(spec.get("preset") or "", UNKNOWN)
        where = spec.get("path") or json.dumps(spec.get("hf"))
        c = counts.get(spec["name"], {})
        rows.append(
            [spec["name"], spec.get("preset") or "–", upstream, licence, where, c.get("rows"), c.get("kept")]
        )
    return _table(["source", "preset", "upstream", "licence", "location", "rows read", "rows kept"], rows)


def _stage_counts(manifest: dict[str, Any]) -> str:
    return stage_counts(manifest["stages"], timings=False).markdown()


def sample_totals(stage_dir: Path) -> dict[str, Any]:
    """Samples, tokens and cost of a generate stage's kept rows: what the set's samples cost, whether
    this run paid for them or found them in the sample cache (the report counts only new requests)."""
    paths = shard_paths(stage_dir / "kept")
    if not paths:
        return {"samples": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    row = (
        pl.scan_parquet(paths)
        .select(
            pl.len().alias("samples"),
            pl.col("prompt_tokens").sum(),
            pl.col("completion_tokens").sum(),
            pl.col("cost_usd").sum(),
        )
        .collect()
        .row(0, named=True)
    )
    return row


def _teacher(run_dir: Path, manifest: dict[str, Any]) -> list[str]:
    parts = []
    for s in manifest["stages"]:
        rep = load_report(run_dir / s["dir"]) if s["stage"] == "generate" else None
        if rep is None:
            continue
        d, c, t = rep["details"], rep.get("config", {}).get("llm", {}), sample_totals(run_dir / s["dir"])
        parts.append(
            f"Teacher `{d.get('model')}` ({d.get('backend')}), {c.get('n')} samples per problem, temperature "
            f"{c.get('temperature')}, max_tokens {c.get('max_tokens')}: {t['samples']:,} samples, "
            f"{t['prompt_tokens'] or 0:,} prompt and {t['completion_tokens'] or 0:,} completion tokens, "
            f"${t['cost_usd'] or 0:.2f} at the recipe's prices."
        )
    for rep in _reports(run_dir, manifest, "verify"):
        acc = rep["details"].get("accuracy_by_source", {})
        parts.append(
            _table(
                ["source", "samples", "verified", "correct", "accuracy"],
                [
                    [
                        s,
                        c["rows"],
                        c["verified"],
                        c["correct"],
                        f"{c['accuracy']:.1%}" if c["accuracy"] is not None else None,
                    ]
                    for s, c in acc.items()
                ],
            )
        )
    return parts


def _pass_rates(run_dir: Path, manifest: dict[str, Any], images: dict[str, str]) -> list[str]:
    parts = []
    for _, d in pass_rate_details(run_dir, manifest):
        parts.append(
            f"Pass rate per problem from the {d.rated_by} samples; kept {d.low} <= pass_rate <= {d.high}: "
            + ", ".join(f"{k} {v:,}" for k, v in d.problems.model_dump().items())
            + " problems."
        )
        drops = d.verifier_drops
        if drops:
            reasons = ", ".join(f"{r} {n:,}" for r, n in drops.failures_by_reason.items()) or "none"
            skipped = ", ".join(f"{r} {n:,}" for r, n in drops.not_counted.items()) or "none"
            parts.append(
                f"Samples the verifier dropped count as failures: {drops.counted_as_failures:,} ({reasons}); "
                f"not counted either way (no verdict on the answer): {skipped}."
            )
    if "pass_rate" in images:
        parts.append(f"![pass rates]({images['pass_rate']})")
    return parts


def _lengths(export: ExportDetails, images: dict[str, str]) -> list[str]:
    tokens = export.tokens
    rows = [
        [name, split, s.rows, s.shards, s.tokens.mean, s.tokens.p50, s.tokens.p90, s.tokens.max]
        for name, splits in export.sets.items()
        for split, s in splits.items()
    ]
    parts = [
        f"Token counts by **{tokens.tokenizer}**"
        + (f" ({tokens.estimated_texts:,} texts estimated)" if tokens.estimated_texts else "")
        + ". SFT rows: the whole conversation; RL rows: the prompt.",
        _table(["config", "split", "rows", "shards", "mean tokens", "p50", "p90", "max"], rows),
    ]
    teacher = tokens.teacher_completion_tokens
    if teacher and teacher.rows:
        parts.append(
            f"Teacher completion tokens of the exported traces (the teacher's own count): mean {teacher.mean}, "
            f"p50 {teacher.p50}, p90 {teacher.p90}, max {teacher.max:,}."
        )
    if "lengths" in images:
        parts.append(f"![lengths]({images['lengths']})")
    return parts


def _usage(splits: dict[str, dict[str, list[Path]]], export: ExportDetails) -> str:
    column = "conversations" if export.format == "sharegpt" else "messages"
    lines = ["```python", "from datasets import load_dataset", ""]
    if splits["sft"]:
        lines.append(
            f'sft = load_dataset("ORG/NAME", "sft")   # {column}: user, assistant "<think>…</think>answer"'
        )
    if splits["rl"]:
        lines.append(
            'rl = load_dataset("ORG/NAME", "rl")     # verl: prompt, reward_model.ground_truth, extra_info'
        )
    return "\n".join([*lines, "```"])


def _chain_of_thought(export: StageReport) -> str:
    """Long-CoT or short-CoT, as the export decided it (null: problem rows, no traces)."""
    dropped = export.drop_reasons.get("empty_reasoning", 0)
    if export.details.long_cot is True:
        return (
            "**Long-CoT**: every SFT answer has non-empty reasoning inside `<think>…</think>`; "
            f"{dropped:,} correct trace(s) with empty or stub reasoning were left out (`empty_reasoning`)."
        )
    if export.details.long_cot is False:
        return (
            "**Short-CoT**: exported with `require_reasoning: false`; SFT answers may have empty reasoning "
            "(`<think>\n\n</think>`)."
        )
    return ""


def render_card(run_dir: Path, manifest: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """The card's Markdown; `images` maps chart names (pass_rate, lengths) to paths relative to it."""
    images = images or {}
    export = export_dir(run_dir, manifest)
    if export is None:
        raise ValueError(f"{run_dir}: no finished export stage, nothing to describe")
    export_report = read_report(export)
    assert export_report is not None  # export_dir checked report.json
    export_details: ExportDetails = export_report.details
    splits = exported_splits(export)
    recipe = manifest["recipe"]
    total = export_details.sft_rows + export_details.rl_rows
    sections = [
        _header(manifest["run"], recipe, splits, total),
        f"# {manifest['run']}",
        (recipe.get("description") or "").strip(),
        f"Built by longcot on {manifest.get('finished_at')} (status {manifest['status']}).",
        _chain_of_thought(export_report),
        "## Configs",
        _table(
            ["config", "split", "rows", "shards"],
            [[n, sp, s.rows, s.shards] for n, sets in export_details.sets.items() for sp, s in sets.items()],
        ),
        _usage(splits, export_details),
        "## Sources and licences",
        _provenance(run_dir, manifest),
        "Licences are those stated upstream for the problems; model outputs also fall under the teacher's terms.",
        "## Pipeline",
        _stage_counts(manifest),
    ]
    dedup = dedup_reports(run_dir)
    if dedup:
        sections += ["## Deduplication", dedup_markdown(dedup)]
    for rep in _reports(run_dir, manifest, "decontaminate"):
        sections += ["## Decontamination", decontam_markdown(rep["details"])]
    teacher = _teacher(run_dir, manifest)
    if teacher:
        sections += ["## Teacher and verification", *teacher]
    rates = _pass_rates(run_dir, manifest, images)
    if rates:
        sections += ["## Difficulty (pass rate)", *rates]
    sections += ["## Lengths", *_lengths(export_details, images)]
    sections += [
        "## Recipe",
        "```yaml\n" + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True) + "```",
    ]
    return "\n\n".join(s for s in sections if s) + "\n"
