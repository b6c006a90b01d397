"""The collection stage: every source row becomes a problem row or a dropped row with a reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

import polars as pl
from pydantic import Field

from stages.answers import extract_answer, normalize_answers
from stages.collect.jsonl import LineSpan
from stages.collect.probe import check_fields
from stages.collect.readers import read_source, source_spans
from stages.collect.spec import CollectConfig, SourceSpec
from stages.records import DOMAINS, PROBLEM_SCHEMA, conform, detail_json
from stages.stage import Context, Decision, Details, MapStage, Unit
from stages.text import uid_expr

# Problems that cannot be solved from their text alone (Skywork-OR1 removed these too).
IMAGE_PATTERN = r"(?i)!\[[^\]]*\]\([^)]*\)|<img\b|\[img\]|\.(?:png|jpe?g|gif|svg|bmp|webp)\b"
# The same, reaching back to the whole file name for the evidence shown to users.
IMAGE_EVIDENCE = (
    r"(?i)!\[[^\]]*\]\([^)]*\)|<img\b[^>]*>|\[img\][^\[]*|[\w/.:-]+\.(?:png|jpe?g|gif|svg|bmp|webp)\b"
)
URL_PATTERN = r"(?i)\bhttps?://[^\s)\]}]+|\bwww\.[a-z0-9-]+\.[a-z]{2,}[^\s)\]}]*"


class SourceCounts(Details):
    location: str
    rows: int = 0
    kept: int = 0
    with_answer: int = 0
    answer_extracted: int = 0
    with_solution: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)


class CollectDetails(Details):
    sources: dict[str, SourceCounts]
    warnings: list[str]


class SourcePart(NamedTuple):
    """A unit of collection: a source, or one span of a big JSONL source."""

    spec: SourceSpec
    span: LineSpan | None


class Collect(MapStage[CollectConfig]):
    """Read every source, keep usable problems, drop the rest with evidence; per-source counts.
    One unit per source, or per span of a big JSONL file: units are read in parallel, rows keep their
    order within a source."""

    name = "collect"
    Config = CollectConfig
    Details = CollectDetails

    def check(self, config: CollectConfig) -> None:
        for spec in config.sources:
            check_fields(spec)  # a mistyped field path is an error before any work, not 0 rows kept

    def units(self, config: CollectConfig) -> list[Unit]:
        parts = [SourcePart(spec, span) for spec in config.sources for span in source_spans(spec)]
        return [Unit(index, source=part) for index, part in enumerate(parts)]

    def read(self, unit: Unit, config: CollectConfig) -> Iterator[pl.DataFrame]:
        yield from read_source(unit.source.spec, config.batch_rows, unit.source.span)

    def decide(self, mapped: pl.DataFrame, config: CollectConfig, ctx: Context) -> Decision:
        spec: SourceSpec = ctx.unit.source.spec
        kept, dropped = classify(mapped, spec, config)
        counts = {
            "rows": mapped.height,
            "kept": kept.height,
            "with_answer": kept["answer"].is_not_null().sum(),
            "answer_extracted": kept["answer_extracted"].sum(),
            "with_solution": kept["solution"].is_not_null().sum(),
        }
        return Decision(
            conform(kept, PROBLEM_SCHEMA).select(list(PROBLEM_SCHEMA)),
            conform(dropped, PROBLEM_SCHEMA).select(*PROBLEM_SCHEMA, "drop_reason", "drop_detail"),
            tally=(spec.name, counts, dict(dropped["drop_reason"].value_counts().iter_rows())),
        )

    def summarize(self, tallies: list[Any], config: CollectConfig) -> CollectDetails:
        per_source: dict[str, Counter[str]] = {s.name: Counter() for s in config.sources}
        dropped: dict[str, Counter[str]] = {s.name: Counter() for s in config.sources}
        for name, counts, reasons in tallies:
            per_source[name].update(counts)
            dropped[name].update(reasons)
        sources = {
            spec.name: SourceCounts(
                location=str(spec.path or spec.hf),
                **{k: int(v) for k, v in per_source[spec.name].items()},
                dropped=dict(dropped[spec.name].most_common()),
            )
            for spec in config.sources
        }
        warnings = [
            f"source {spec.name!r} has no rows ({spec.path or spec.hf})"
            for spec in config.sources
            if sources[spec.name].rows == 0
        ]
        return CollectDetails(sources=sources, warnings=warnings)


def classify(
    mapped: pl.DataFrame, spec: SourceSpec, config: CollectConfig
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split mapped rows into kept problem rows and dropped rows with `drop_reason` and `drop_detail`."""
    problem = pl.col("problem")
    domain = pl.col("domain").str.strip_chars().str.to_lowercase().fill_null(spec.domain)
    checks: list[tuple[pl.Expr, str]] = [
        (problem.is_null(), "missing_problem"),
        (problem.str.strip_chars() == "", "empty_problem"),
        (problem.str.len_chars() > config.max_problem_chars, "problem_too_long"),
    ]
    if config.drop_image_problems:
        checks.append((problem.str.contains(IMAGE_PATTERN), "needs_image"))
    if config.drop_url_problems:
        checks.append((problem.str.contains(URL_PATTERN), "needs_url"))
    checks.append((~domain.is_in(DOMAINS), "invalid_domain"))
    reason = pl.when(pl.col("error").is_not_null()).then(pl.col("error"))
    for condition, name in checks:
        reason = reason.when(condition).then(pl.lit(name))
    rows = (
        with_answers(mapped, spec)
        .with_columns(domain.alias("domain"))
        .with_columns(
            reason.alias("drop_reason"),
            uid_expr(problem).alias("uid"),
            pl.lit(spec.name).alias("source"),
            pl.concat_list(pl.lit(spec.name)).alias("sources"),
        )
    )
    return rows.filter(pl.col("drop_reason").is_null()), with_evidence(
        rows.filter(pl.col("drop_reason").is_not_null()), spec, config
    )


def with_evidence(dropped: pl.DataFrame, spec: SourceSpec, config: CollectConfig) -> pl.DataFrame:
    """`drop_detail` for dropped rows only (regex extraction is not paid for kept rows)."""
    problem = pl.col("problem")
    evidence = (
        pl.when(pl.col("error").is_not_null())
        .then(pl.format("{}: {}", location(spec), pl.col("error_detail").fill_null("")))
        .when(pl.col("drop_reason") == "problem_too_long")
        .then(
            pl.format(
                "{} characters > max_problem_chars {}", problem.str.len_chars(), config.max_problem_chars
            )
        )
        .when(pl.col("drop_reason") == "needs_image")
        .then(problem.str.extract(f"({IMAGE_EVIDENCE})"))
        .when(pl.col("drop_reason") == "needs_url")
        .then(problem.str.extract(f"({URL_PATTERN})"))
        .otherwise(pl.col("domain"))
    )
    return dropped.with_columns(
        detail_json(source=spec.name, row=pl.col("row"), evidence=evidence).alias("drop_detail")
    )


def location(spec: SourceSpec) -> pl.Expr:
    """Where each row is, as people look for it: `file:line` for JSONL, else the row's position."""
    if spec.hf is not None:
        return pl.format("{} row {}", pl.lit(spec.hf.dataset), pl.col("row"))
    if spec.resolved_format() == "jsonl":
        return pl.format("{}:{}", pl.lit(str(spec.path)), pl.col("row") + 1)
    return pl.format("{} row {}", pl.lit(str(spec.path)), pl.col("row"))


def with_answers(mapped: pl.DataFrame, spec: SourceSpec) -> pl.DataFrame:
    """Gold answers: the mapped field, else (if allowed) extracted from the solution; then normalised."""
    missing = pl.col("answer").is_null() | (pl.col("answer").str.strip_chars() == "")
    extracted = (
        pl.when(missing & pl.lit(spec.answer_from_solution))
        .then(pl.col("solution"))
        .map_elements(extract_answer, return_dtype=pl.String, skip_nulls=True)
    )
    filled = (
        mapped.with_columns(extracted.alias("extracted"))  # materialised: the extraction runs Python
        .with_columns(
            pl.when(missing).then(pl.col("extracted")).otherwise(pl.col("answer")).alias("answer"),
            (missing & pl.col("extracted").is_not_null()).alias("answer_extracted"),
        )
        .drop("extracted")
    )
    return normalize_answers(filled, "answer", spec.integer_answers)
