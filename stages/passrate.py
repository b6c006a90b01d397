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
input is a verify stage's `kept/`; they are part of the cache key through `extra_inputs`). Not counted
either way, because they say nothing about the sample's answer (NOT_COUNTED): `verifier_error` (our
checker failed: a timeout, a crash, unreadable tests), `unverifiable` (no gold and no tests to judge
against) and `bad_input` (the row could not be read); nor a sample kept without a verdict (`correct`
null, `unverifiable: keep`).

Every input row gets `pass_rate` and `n_samples`. Rows of problems with low <= pass_rate <= high are
kept; the others are dropped with `too_easy` / `too_hard` and the rate in `drop_detail`. Problems with
no counted sample have a null rate: kept or dropped (`unrated`) by `unrated`. The unit is the input row
(a sample, or a problem when the input is problem rows), so rows in = kept + dropped. A problem whose
samples the verifier dropped, every one, has no input row: it is accounted for in the report and in
`rates/` (one row per problem: counts, rate and fate `no_kept_sample`), so the problems rated match
the problems that entered verify.

A global stage: the map phase keeps (uid, correct) per row; one reduce rates every problem (running
the student first, when there is one: generate and verify through the runner into `student/`) and
gives each row its plan (pass_rate, n_samples, drop_reason and evidence); the generic apply writes it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages import generate, verify
from stages.engine import LocalEngine
from stages.records import detail_json
from stages.runner import run_steps
from stages.stage import (
    Context,
    Decision,
    Details,
    GlobalStage,
    Plan,
    ReduceContext,
    StageReport,
    apply_plan,
)
from stages.store import ShardWriter, load_report, shard_columns, shard_paths

RATE_COLUMNS = ("pass_rate", "n_samples")
COUNT_COLUMNS = ("n_correct", "n_failed_by_verifier", "n_kept")  # in rates/ and drop_detail, not on rows
# verifier drop reasons that say nothing about the sample's answer (see the module docstring)
NOT_COUNTED = frozenset({"verifier_error", "unverifiable", "bad_input"})
RATES_DIR = "rates"  # inside the stage directory: one row per problem
EXAMPLES = 20  # problems without a kept sample listed in the report (all of them are in rates/)
PROBLEM_FIELDS = ("uid", "source", "domain", "problem", "answer", "solution", "tests", "meta")
STUDENT_DIR = "student"  # inside the stage directory: problems/, 01-generate/, 02-verify/
UID_CORRECT = {"uid": pl.String, "correct": pl.Boolean}


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
    rounds: list[int] | None = Field(
        None,
        description="adaptive sampling: samples per problem after each round, e.g. [2, 4, 8] (the last is "
        "student.llm.n); a problem stops once its fate in [low, high] can no longer change",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PassRateConfig:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.rounds is not None:
            if self.student is None:
                raise ValueError("rounds: adaptive sampling needs a `student:` to sample")
            k = self.student.llm.n
            if self.rounds != sorted(set(self.rounds)) or self.rounds[0] < 1 or self.rounds[-1] != k:
                raise ValueError(f"rounds must increase and end at student.llm.n ({k}); got {self.rounds}")
        return self

    def schedule(self) -> list[int]:
        """Samples per problem after each round: all k at once unless `rounds` says otherwise."""
        assert self.student is not None
        return self.rounds or [self.student.llm.n]


# ---- report details ----------------------------------------------------------------------------------


class ProblemFates(Details):
    """Problems that entered verification, per fate (see `problem_fates`)."""

    total: int
    kept: int = 0
    too_easy: int = 0
    too_hard: int = 0
    unrated: int = 0
    no_kept_sample: int = 0


class RateCount(Details):
    """How many problems had exactly n_correct of n_samples: the exact-rate histogram."""

    n_correct: int
    n_samples: int
    problems: int


class LostProblem(Details):
    uid: str
    n_correct: int
    n_samples: int


class VerifierDrops(Details):
    dir: str  # relative to this stage's directory when it is inside it (the student's)
    counted_as_failures: int
    failures_by_reason: dict[str, int]
    not_counted: dict[str, int]


class SubRunCounts(Details):
    rows_in: int
    rows_kept: int
    drop_reasons: dict[str, int]


class StudentRun(Details):
    model: str
    k: int
    problems: int
    generate: SubRunCounts  # summed over rounds
    verify: SubRunCounts
    completion_tokens: int  # of every problem's final-round samples (new or from the sample cache)
    cost_usd: float
    rounds: list[int]  # samples per problem after each round
    decided_per_round: list[int]  # problems whose fate was settled in each round
    samples_drawn: int
    samples_without_early_stop: int  # k x problems


class PassRateDetails(Details):
    rated_by: str  # "teacher" or "student:<model>"
    low: float
    high: float
    problems: ProblemFates
    rated: int
    rate_counts: list[RateCount]
    no_kept_sample: list[LostProblem]  # the first EXAMPLES; all of them are in rates/
    verifier_drops: VerifierDrops | None  # None: the rated rows are not a verify stage's kept rows
    student: StudentRun | None


# ---- rates -------------------------------------------------------------------------------------------


def verifier_drops_dir(rated_dir: Path | None) -> Path | None:
    """The verifier's dropped rows next to its kept rows, when `rated_dir` is a verify stage's kept/."""
    # read as plain JSON: any directory a verify stage published counts, a `longcot verify` output too
    report = load_report(rated_dir.parent) if rated_dir is not None and rated_dir.name == "kept" else None
    return rated_dir.parent / "dropped" if rated_dir and report and report.get("stage") == "verify" else None


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


def _scan(directory: Path, columns: list[str]) -> pl.LazyFrame | None:
    """`columns` of a shard directory, lazily; None when it holds no shard (a stage that kept or
    dropped nothing writes none, and polars cannot scan an empty list)."""
    paths = shard_paths(directory)
    return pl.scan_parquet(paths).select(columns) if paths else None


def verifier_drops(drops: Path | None, out_dir: Path) -> tuple[pl.LazyFrame | None, VerifierDrops | None]:
    """The verifier's dropped samples (uid, drop_reason) and a summary of how they count."""
    if drops is None:
        return None, None
    dropped = _scan(drops, ["uid", "drop_reason"])
    where = str(drops.relative_to(out_dir) if drops.is_relative_to(out_dir) else drops)
    return dropped, _drop_summary(dropped, where)


def _drop_summary(dropped: pl.LazyFrame | None, where: str) -> VerifierDrops:
    reasons = dropped.group_by("drop_reason").len().collect().rows() if dropped is not None else []
    return VerifierDrops(
        dir=where,
        counted_as_failures=sum(n for r, n in reasons if r not in NOT_COUNTED),
        failures_by_reason={r: n for r, n in sorted(reasons) if r not in NOT_COUNTED},
        not_counted={r: n for r, n in sorted(reasons) if r in NOT_COUNTED},
    )


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
        problems.with_columns(pl.col("n_samples", *COUNT_COLUMNS).fill_null(0), fate.alias("fate"))
        .drop("_input")
        .sort("uid")
    )


def row_plan(uids: pl.Series, rates: pl.DataFrame, config: PassRateConfig, rated_by: str) -> pl.DataFrame:
    """Per input row (in order): its problem's pass_rate and n_samples, and drop_reason with the
    evidence (drop_detail) when the rate is outside [low, high] (or unrated and dropped)."""
    rated = (
        uids.to_frame("uid")
        .join(rates, on="uid", how="left", maintain_order="left")
        .with_columns(pl.col("n_samples").fill_null(0), verdict(config).alias("drop_reason"))
    )
    evidence = detail_json(
        pass_rate=pl.col("pass_rate"),
        n_correct=pl.col("n_correct"),
        n_samples=pl.col("n_samples"),
        n_failed_by_verifier=pl.col("n_failed_by_verifier"),
        low=config.low,
        high=config.high,
        rated_by=rated_by,
    )
    return rated.select(
        *RATE_COLUMNS,
        "drop_reason",
        pl.when(pl.col("drop_reason").is_not_null()).then(evidence).alias("drop_detail"),
    )


def rate_details(problems: pl.DataFrame) -> dict[str, Any]:
    """Problems per fate, how many have a rate, the exact-rate histogram, and examples of problems
    without a kept sample (PassRateDetails fields)."""
    rated = problems.filter(pl.col("pass_rate").is_not_null())
    histogram = rated.group_by("n_correct", "n_samples").len().sort("n_samples", "n_correct")
    lost = problems.filter(pl.col("fate") == "no_kept_sample")
    return {
        "problems": ProblemFates(total=problems.height, **dict(problems["fate"].value_counts().iter_rows())),
        "rated": rated.height,
        "rate_counts": [RateCount(n_correct=c, n_samples=n, problems=k) for c, n, k in histogram.iter_rows()],
        "no_kept_sample": [
            LostProblem(**r) for r in lost.head(EXAMPLES).select(*LostProblem.model_fields).to_dicts()
        ],
    }


def rate_values(details: PassRateDetails) -> list[float]:
    """One pass rate per rated problem, from a pass_rate report's details (for histograms)."""
    return [r.n_correct / r.n_samples for r in details.rate_counts if r.n_samples for _ in range(r.problems)]


# ---- the student -------------------------------------------------------------------------------------


def student_name(student: generate.GenerateConfig) -> tuple[str, int]:
    """The student's model and k (samples per problem)."""
    return student.llm.model, student.llm.n


def settled(rates: pl.DataFrame, remaining: int, config: PassRateConfig) -> pl.Expr:
    """Whether a problem's fate can no longer change with `remaining` more samples: whatever they
    turn out to be (right, wrong, or not counted), its final rate stays below `low`, above `high`, or
    inside [low, high]. Exact, so early stopping decides what full sampling would."""
    c, m = pl.col("n_correct"), pl.col("n_samples")
    lowest = pl.min_horizontal(c / (m + remaining), c / m)
    highest = pl.max_horizontal((c + remaining) / (m + remaining), c / m)
    decided = (
        (highest < config.low) | (lowest > config.high) | ((lowest >= config.low) & (highest <= config.high))
    )
    return pl.when(remaining == 0).then(True).when(m == 0).then(False).otherwise(decided)


def student_samples(
    input_dir: Path, config: PassRateConfig, work: Path
) -> tuple[pl.LazyFrame, pl.LazyFrame | None, StudentRun]:
    """Sample and verify the student on the input's problems, through the runner (inline), in rounds
    (`rounds`; one round of k by default) into `work` (problems/, round-N/{01-generate,02-verify}/).
    Each round asks every undecided problem for its first n_r samples (the sample cache returns the
    ones drawn before); a problem leaves once `settled`. Returns the verdicts (uid, correct) kept and
    the verifier's drops (uid, drop_reason) of every problem's final round, and a summary."""
    assert config.student is not None
    columns = [c for c in PROBLEM_FIELDS if c in shard_columns(input_dir)]
    scanned = _scan(input_dir, columns)  # None: an earlier stage kept nothing, so no rounds
    problems = (
        scanned.unique("uid", keep="first", maintain_order=True).collect()
        if scanned is not None
        else pl.DataFrame(schema={"uid": pl.String})
    )
    k = config.student.llm.n
    undecided, kept, dropped, decided = problems, [], [], []
    reports: dict[str, list[StageReport]] = {"generate": [], "verify": []}
    costs: list[pl.LazyFrame] = []
    drawn = previous = 0
    with LocalEngine(1) as inline:
        for number, n in enumerate(config.schedule(), start=1):
            if undecided.height == 0:
                break
            round_dir = work / f"round-{number}"
            (round_dir / "problems").mkdir(parents=True)
            undecided.write_parquet(round_dir / "problems" / "part-00000.parquet")
            student = config.student.model_copy(
                update={"llm": config.student.llm.model_copy(update={"n": n})}
            )
            steps = [(generate.Generate(), student), (verify.Verify(), config.student_verify)]
            generated, verified = run_steps(steps, round_dir, inline, input_dir=round_dir / "problems")
            drawn += undecided.height * (n - previous)  # earlier samples come back from the cache
            previous = n
            reports["generate"].append(generated.report)
            reports["verify"].append(verified.report)
            kept_r = _scan(verified.out_dir / "kept", ["uid", "correct"])
            dropped_r = _scan(verified.out_dir / "dropped", ["uid", "drop_reason"])
            outcome = pass_rates(
                sample_outcomes(kept_r if kept_r is not None else pl.LazyFrame(schema=UID_CORRECT), dropped_r)
            )
            outcome = (
                undecided.select("uid")
                .join(outcome, on="uid", how="left")
                .with_columns(pl.col("n_samples", "n_correct").fill_null(0))
            )
            done = outcome.filter(settled(outcome, k - n, config)).select("uid")
            decided.append(done.height)
            if kept_r is not None:
                kept.append(kept_r.join(done.lazy(), on="uid", how="semi"))
            if dropped_r is not None:
                dropped.append(dropped_r.join(done.lazy(), on="uid", how="semi"))
            sampled = _scan(generated.out_dir / "kept", ["uid", "completion_tokens", "cost_usd"])
            if sampled is not None:  # each problem's samples once: from its last round
                costs.append(sampled.join(done.lazy(), on="uid", how="semi"))
            undecided = undecided.join(done, on="uid", how="anti")
    model, _ = student_name(config.student)
    spent = (
        pl.concat(costs).select("completion_tokens", "cost_usd").sum().collect().row(0) if costs else (0, 0)
    )
    summary = StudentRun(
        model=model,
        k=k,
        problems=problems.height,
        generate=_sub_run(reports["generate"]),
        verify=_sub_run(reports["verify"]),
        completion_tokens=spent[0] or 0,
        cost_usd=spent[1] or 0.0,
        rounds=config.schedule()[: len(decided)],
        decided_per_round=decided,
        samples_drawn=drawn,
        samples_without_early_stop=k * problems.height,
    )
    kept_all = pl.concat(kept) if kept else pl.LazyFrame(schema=UID_CORRECT)
    return kept_all, (pl.concat(dropped) if dropped else None), summary


def _sub_run(reports: list[StageReport]) -> SubRunCounts:
    """One sub-stage's counts summed over the rounds (a sample asked again in a later round, from the
    cache, counts again: these are rows the sub-runs processed)."""
    reasons: Counter[str] = Counter()
    for report in reports:
        reasons.update(report.drop_reasons)
    return SubRunCounts(
        rows_in=sum(r.rows_in for r in reports),
        rows_kept=sum(r.rows_kept for r in reports),
        drop_reasons=dict(reasons),
    )


# ---- the stage ---------------------------------------------------------------------------------------


class PassRate(GlobalStage[PassRateConfig]):
    """Rate every problem of the input, then keep or drop each row by its problem's rate."""

    name = "pass_rate"
    Config = PassRateConfig
    Details = PassRateDetails
    extra_inputs = ("../dropped",)  # the verifier's drops count as failures (verifier_drops_dir)
    batch_rows = 20_000  # generation rows carry their reasoning: bounded batches in the apply phase
    summary_columns = ("uid", "correct")  # the map phase never reads the texts

    def summarize(self, batch: pl.DataFrame, config: PassRateConfig, ctx: Context) -> pl.DataFrame:
        """(uid, correct) per row; uid only when the student rates, or when the rows have no verdicts."""
        graded = config.student is None and "correct" in batch.columns
        return batch.select("uid", *([pl.col("correct").cast(pl.Boolean)] if graded else []))

    def reduce(self, parts: list[Any], config: PassRateConfig, ctx: ReduceContext) -> Plan:
        rows = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(schema=UID_CORRECT)
        if config.student is not None:
            assert ctx.input_dir is not None
            kept, dropped, student = student_samples(ctx.input_dir, config, ctx.out_dir / STUDENT_DIR)
            drops = _drop_summary(dropped, "student/round-*/02-verify/dropped")
            rated_by = f"student:{student.model}"
        else:
            if "correct" not in rows.columns:
                raise ValueError(
                    "pass_rate without a student needs verified generation rows (a `correct` column): "
                    "put `- stage: verify` before it, or configure `student:`"
                )
            student, kept, rated_by = None, rows.lazy(), "teacher"
            dropped, drops = verifier_drops(verifier_drops_dir(ctx.input_dir), ctx.out_dir)
        rates = pass_rates(
            sample_outcomes(kept if kept is not None else pl.LazyFrame(schema=UID_CORRECT), dropped)
        )
        problems = problem_fates(rows.select(pl.col("uid").unique()), rates, config)
        table = ShardWriter(ctx.out_dir / RATES_DIR)
        table.write(problems)
        table.close()
        details = PassRateDetails(
            rated_by=rated_by,
            low=config.low,
            high=config.high,
            **rate_details(problems),
            verifier_drops=drops,
            student=student,
        )
        return Plan(row_plan(rows["uid"], rates, config, rated_by), details)

    def apply(
        self, batch: pl.DataFrame, plan: pl.DataFrame, config: PassRateConfig, ctx: Context
    ) -> Decision:
        """The plan's rates replace any the rows carried (a second pass_rate), nulls included."""
        return apply_plan(batch.drop([*RATE_COLUMNS, *COUNT_COLUMNS], strict=False), plan)
