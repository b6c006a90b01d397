"""Difficulty by pass rate: keep the problems a model solves neither always nor never.

Light-R1 kept the problems a small reasoner fails often; DeepScaleR and Skywork-OR1 dropped those a
model always (k/k) or never (0/k) solves. This stage computes, per problem uid,

    pass_rate = correct samples / counted samples        n_samples = counted samples

from verified generation rows: by default the teacher's own samples (the input, after `verify`), or
with `student:` k fresh samples per problem from any generation backend (stages.generate), verified
by stages.verify. Every sample the model produced counts: a sample kept with a verdict counts by it,
and a sample the verifier dropped (truncated, no_final_answer, repetition, language_mixing, ...) is a
failure: it is not a usable solution, and leaving it out would make problems look easier than they
are. The verifier's dropped rows are read next to its kept rows (`<NN-verify>/dropped`, when the
input is a verify stage's `kept/`). Not counted either way, because they say nothing about the
sample's answer (NOT_COUNTED): `verifier_error` (our checker failed: a timeout, a crash, unreadable
tests), `unverifiable` (no gold and no tests to judge against) and `bad_input` (the row could not be
read); nor a sample kept without a verdict (`correct` null, `unverifiable: keep`).

Every input row gets `pass_rate` and `n_samples`. Rows of problems with low <= pass_rate <= high are
kept; the others are dropped with `too_easy` / `too_hard` and the rate in `drop_detail`. Problems with
no counted sample have a null rate: kept or dropped (`unrated`) by `unrated`. The unit is the input row
(a sample, or a problem when the input is problem rows), so rows in = kept + dropped. A problem whose
samples the verifier dropped, every one, has no input row: it is accounted for in the report and in
`rates/` (one row per problem: counts, rate and fate `no_kept_sample`), so the problems rated match
the problems that entered verify.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages import generate, verify
from stages.records import detail_json
from stages.store import StageWriter, load_report, read_shards, shard_columns, shard_paths

RATE_COLUMNS = ("pass_rate", "n_samples")
# verifier drop reasons that say nothing about the sample's answer (see the module docstring)
NOT_COUNTED = frozenset({"verifier_error", "unverifiable", "bad_input"})
VERIFY_STAGES = ("verify", "student_verify")
RATES_DIR = "rates"  # inside the stage directory: one row per problem
EXAMPLES = 20  # problems without a kept sample listed in the report (all of them are in rates/)
PROBLEM_FIELDS = ("uid", "source", "domain", "problem", "answer", "solution", "tests", "meta")
STUDENT_DIR = "student"  # inside the stage directory: problems/, generate/, verify/


class PassRateConfig(BaseModel):
    """`- stage: pass_rate` in a recipe."""

    model_config = ConfigDict(extra="forbid")

    low: float = Field(0.0, ge=0, le=1, description="keep problems with pass_rate >= low")
    high: float = Field(1.0, ge=0, le=1, description="keep problems with pass_rate <= high")
    unrated: Literal["keep", "drop"] = Field("keep", description="problems with no verified sample")
    student: generate.GenerateConfig | None = Field(
        None,
        description="sample k = student.llm.n responses per problem from this model instead of the teacher",
    )
    student_verify: verify.VerifyConfig = Field(default_factory=verify.VerifyConfig)

    @model_validator(mode="after")
    def _ordered(self) -> PassRateConfig:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


def verifier_drops_dir(rated_dir: Path) -> Path | None:
    """The verifier's dropped rows next to its kept rows, when `rated_dir` is a verify stage's kept/."""
    report = load_report(rated_dir.parent) if rated_dir.name == "kept" else None
    return rated_dir.parent / "dropped" if report and report.get("stage") in VERIFY_STAGES else None


def sample_outcomes(kept: pl.LazyFrame, dropped: pl.LazyFrame | None) -> pl.LazyFrame:
    """uid, correct (null = not counted), dropped: one row per sample, kept (uid, correct) or dropped by
    the verifier (uid, drop_reason: a failure unless the reason is in NOT_COUNTED)."""
    frames = [kept.select("uid", pl.col("correct").cast(pl.Boolean), pl.lit(False).alias("dropped"))]
    if dropped is not None:
        frames.append(
            dropped.filter(pl.col("uid").is_not_null()).select(
                "uid",
                pl.when(pl.col("drop_reason").is_in(list(NOT_COUNTED)))
                .then(pl.lit(None, pl.Boolean))
                .otherwise(pl.lit(False))
                .alias("correct"),
                pl.lit(True).alias("dropped"),
            )
        )
    return pl.concat(frames)


def pass_rates(outcomes: pl.LazyFrame) -> pl.DataFrame:
    """uid, n_samples, n_correct, n_failed_by_verifier, n_kept, pass_rate (null when no sample counts)."""
    counted = pl.col("correct").is_not_null()
    return (
        outcomes.group_by("uid")
        .agg(
            counted.sum().cast(pl.Int32).alias("n_samples"),
            pl.col("correct").fill_null(False).sum().cast(pl.Int32).alias("n_correct"),
            (counted & pl.col("dropped")).sum().cast(pl.Int32).alias("n_failed_by_verifier"),
            (~pl.col("dropped")).sum().cast(pl.Int32).alias("n_kept"),
        )
        .with_columns(
            pl.when(pl.col("n_samples") > 0)
            .then(pl.col("n_correct") / pl.col("n_samples"))
            .alias("pass_rate")
        )
        .collect()
    )


def verdict(config: PassRateConfig) -> pl.Expr:
    """The drop reason of a row from its problem's rate (null = kept)."""
    rate = pl.col("pass_rate")
    return (
        pl.when(rate.is_null())
        .then(pl.lit(None if config.unrated == "keep" else "unrated", pl.String))
        .when(rate < config.low)
        .then(pl.lit("too_hard"))
        .when(rate > config.high)
        .then(pl.lit("too_easy"))
        .otherwise(pl.lit(None, pl.String))
    )


def _scan(directory: Path, columns: list[str]) -> pl.LazyFrame:
    return pl.scan_parquet(shard_paths(directory)).select(columns)


def _student_samples(input_dir: Path, config: PassRateConfig, out: StageWriter) -> tuple[Path, dict]:
    """Sample and verify the student on the input's problems; returns its verified rows' directory
    and a summary. Both sub-runs are published inside this stage's directory (student/)."""
    assert config.student is not None
    work = out.partial / STUDENT_DIR
    columns = [c for c in PROBLEM_FIELDS if c in shard_columns(input_dir)]
    problems = _scan(input_dir, columns).unique("uid", keep="first", maintain_order=True).collect()
    (work / "problems").mkdir(parents=True, exist_ok=True)
    problems.write_parquet(work / "problems" / "part-00000.parquet")
    with StageWriter(work / "generate", "student_generate") as gen:
        gen.finish(
            generate.run(work / "problems", config.student, gen),
            config=config.student.model_dump(mode="json"),
        )
    with StageWriter(work / "verify", "student_verify") as ver:
        ver.finish(
            verify.run(work / "generate" / "kept", config.student_verify, ver),
            config=config.student_verify.model_dump(mode="json"),
        )
    reports = {name: load_report(work / name) or {} for name in ("generate", "verify")}
    summary = {
        "model": config.student.llm.model,
        "k": config.student.llm.n,
        "problems": problems.height,
        **{
            f"{name}_{key}": reports[name].get(key)
            for name in reports
            for key in ("rows_in", "rows_kept", "drop_reasons")
        },
        "tokens_out": reports["generate"].get("details", {}).get("tokens_out"),
        "cost_usd": reports["generate"].get("details", {}).get("cost_usd"),
    }
    return work / "verify" / "kept", summary


def _rates(rated_dir: Path) -> tuple[pl.DataFrame, dict[str, Any] | None]:
    """Per-problem rates of the samples in `rated_dir` and the verifier's drops beside it; and a
    summary of those drops (None when `rated_dir` is not a verify stage's output)."""
    drops = verifier_drops_dir(rated_dir)
    kept = (
        _scan(rated_dir, ["uid", "correct"])
        if shard_paths(rated_dir)
        else pl.LazyFrame(schema={"uid": pl.String, "correct": pl.Boolean})
    )
    dropped = _scan(drops, ["uid", "drop_reason"]) if drops and shard_paths(drops) else None
    rates = pass_rates(sample_outcomes(kept, dropped))
    if drops is None:
        return rates, None
    reasons = dropped.group_by("drop_reason").len().collect().rows() if dropped is not None else []
    return rates, {
        "dir": str(drops),
        "counted_as_failures": sum(n for r, n in reasons if r not in NOT_COUNTED),
        "failures_by_reason": {r: n for r, n in sorted(reasons) if r not in NOT_COUNTED},
        "not_counted": {r: n for r, n in sorted(reasons) if r in NOT_COUNTED},
    }


def problem_fates(input_uids: pl.DataFrame, rates: pl.DataFrame, config: PassRateConfig) -> pl.DataFrame:
    """One row per problem that entered verification: its counts, rate and fate (kept, too_easy,
    too_hard, unrated, or no_kept_sample when the verifier dropped every sample, so no row is here)."""
    problems = rates.join(
        input_uids.with_columns(pl.lit(True).alias("_input")), on="uid", how="full", coalesce=True
    )
    fate = (
        pl.when(pl.col("_input").is_null())
        .then(pl.lit("no_kept_sample"))
        .when(pl.col("pass_rate").is_null())
        .then(pl.lit("unrated"))
        .otherwise(pl.coalesce(verdict(config), pl.lit("kept")))
    )
    return (
        problems.with_columns(
            pl.col("n_samples", "n_correct", "n_failed_by_verifier", "n_kept").fill_null(0),
            fate.alias("fate"),
        )
        .drop("_input")
        .sort("uid")
    )


def rate_report(problems: pl.DataFrame) -> dict[str, Any]:
    """Problems per fate, how many have a rate, the exact-rate histogram, and examples of problems
    without a kept sample."""
    rated = problems.filter(pl.col("pass_rate").is_not_null())
    histogram = rated.group_by("n_correct", "n_samples").len().sort("n_samples", "n_correct")
    lost = problems.filter(pl.col("fate") == "no_kept_sample")
    return {
        "problems": {"total": problems.height} | dict(problems["fate"].value_counts(sort=True).iter_rows()),
        "rated": rated.height,
        # per (correct, samples) pair: how many problems; exact rates for the report's histogram
        "rate_counts": [{"n_correct": c, "n_samples": n, "problems": k} for c, n, k in histogram.iter_rows()],
        "no_kept_sample": lost.head(EXAMPLES).select("uid", "n_correct", "n_samples").to_dicts(),
    }


def run(input_dir: Path, config: PassRateConfig, out: StageWriter) -> dict[str, Any]:
    """Rate every problem of `input_dir`, then keep or drop each row by its problem's rate."""
    student: dict[str, Any] | None = None
    if config.student is not None:
        rated_dir, student = _student_samples(input_dir, config, out)
        rated_by = f"student:{config.student.llm.model}"
    else:
        if "correct" not in shard_columns(input_dir) and shard_paths(input_dir):
            raise ValueError(
                "pass_rate without a student needs verified generation rows (a `correct` column): "
                "put `- stage: verify` before it, or configure `student:`"
            )
        rated_dir, rated_by = input_dir, "teacher"
    rates, verifier_drops = _rates(rated_dir)
    extra = ("n_correct", "n_failed_by_verifier", "n_kept")
    seen: list[pl.Series] = []
    for batch in read_shards(input_dir):
        out.count_in(batch.height)
        rated = (
            batch.drop([c for c in (*RATE_COLUMNS, *extra) if c in batch.columns])
            .join(rates, on="uid", how="left", maintain_order="left")
            .with_columns(pl.col("n_samples").fill_null(0), verdict(config).alias("drop_reason"))
        )
        seen.append(batch["uid"].unique())
        out.keep(rated.filter(pl.col("drop_reason").is_null()).drop(extra))
        out.drop(
            rated.filter(pl.col("drop_reason").is_not_null())
            .with_columns(
                detail_json(
                    pass_rate=pl.col("pass_rate"),
                    n_correct=pl.col("n_correct"),
                    n_samples=pl.col("n_samples"),
                    n_failed_by_verifier=pl.col("n_failed_by_verifier"),
                    low=config.low,
                    high=config.high,
                    rated_by=rated_by,
                ).alias("drop_detail")
            )
            .drop(extra)
        )
    uids = pl.concat(seen).unique().to_frame() if seen else pl.DataFrame(schema={"uid": pl.String})
    problems = problem_fates(uids, rates, config)
    table = out.output(RATES_DIR)
    table.write(problems)
    table.close()
    return {
        "rated_by": rated_by,
        "low": config.low,
        "high": config.high,
        **rate_report(problems),
        "verifier_drops": verifier_drops,
        "student": student,
    }


def rate_values(details: dict[str, Any]) -> list[float]:
    """One pass rate per rated problem, from a pass_rate report's details (for histograms)."""
    return [
        row["n_correct"] / row["n_samples"]
        for row in details.get("rate_counts", [])
        if row["n_samples"]
        for _ in range(row["problems"])
    ]
