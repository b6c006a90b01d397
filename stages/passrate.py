"""Difficulty by pass rate: keep the problems a model solves neither always nor never.

Light-R1 kept the problems a small reasoner fails often; DeepScaleR and Skywork-OR1 dropped those a
model always (k/k) or never (0/k) solves. This stage computes, per problem uid,

    pass_rate = correct samples / samples with a verdict        n_samples = samples with a verdict

from verified generation rows: by default the teacher's own samples (the input, after `verify`), or
with `student:` k fresh samples per problem from any generation backend (stages.generate), verified
by stages.verify. Samples the verifier dropped (truncated, language mixing, ...) are not in its kept
rows, so they do not count either way; a sample kept without a verdict (`correct` null) does not count.

Every input row gets `pass_rate` and `n_samples`. Rows of problems with low <= pass_rate <= high are
kept; the others are dropped with `too_easy` / `too_hard` and the rate in `drop_detail`. Problems with
no verdict at all have a null rate: kept or dropped (`unrated`) by `unrated`. The unit is the input row
(a sample, or a problem when the input is problem rows), so rows in = kept + dropped.
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


def pass_rates(samples: pl.LazyFrame) -> pl.DataFrame:
    """uid, n_samples, n_correct, pass_rate (null when no sample has a verdict) from uid + correct."""
    return (
        samples.group_by("uid")
        .agg(
            pl.col("correct").is_not_null().sum().cast(pl.Int32).alias("n_samples"),
            pl.col("correct").fill_null(False).sum().cast(pl.Int32).alias("n_correct"),
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
    rates = (
        pass_rates(_scan(rated_dir, ["uid", "correct"]))
        if shard_paths(rated_dir)
        else pl.DataFrame(
            schema={"uid": pl.String, "n_samples": pl.Int32, "n_correct": pl.Int32, "pass_rate": pl.Float64}
        )
    )
    seen: list[pl.Series] = []
    for batch in read_shards(input_dir):
        out.count_in(batch.height)
        rated = (
            batch.drop([c for c in (*RATE_COLUMNS, "n_correct") if c in batch.columns])
            .join(rates, on="uid", how="left", maintain_order="left")
            .with_columns(pl.col("n_samples").fill_null(0), verdict(config).alias("drop_reason"))
        )
        seen.append(batch["uid"].unique())
        out.keep(rated.filter(pl.col("drop_reason").is_null()).drop("n_correct"))
        out.drop(
            rated.filter(pl.col("drop_reason").is_not_null())
            .with_columns(
                detail_json(
                    pass_rate=pl.col("pass_rate"),
                    n_correct=pl.col("n_correct"),
                    n_samples=pl.col("n_samples"),
                    low=config.low,
                    high=config.high,
                    rated_by=rated_by,
                ).alias("drop_detail")
            )
            .drop("n_correct")
        )
    uids = pl.concat(seen).unique().to_frame() if seen else pl.DataFrame(schema={"uid": pl.String})
    per_problem = uids.join(rates, on="uid", how="left").with_columns(
        pl.when(pl.col("pass_rate").is_null())
        .then(pl.lit("unrated"))
        .otherwise(pl.coalesce(verdict(config), pl.lit("kept")))
        .alias("fate")
    )
    problems = {"total": per_problem.height} | dict(per_problem["fate"].value_counts().iter_rows())
    histogram = (
        per_problem.filter(pl.col("pass_rate").is_not_null())
        .group_by("n_correct", "n_samples")
        .len()
        .sort("n_samples", "n_correct")
    )
    return {
        "rated_by": rated_by,
        "low": config.low,
        "high": config.high,
        "problems": problems,
        # per (correct, samples) pair: how many problems; exact rates for the report's histogram
        "rate_counts": [{"n_correct": c, "n_samples": n, "problems": k} for c, n, k in histogram.iter_rows()],
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
