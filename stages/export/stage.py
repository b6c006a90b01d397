"""Export: the SFT set and the RL set (verl's Parquet layout), from problems or verified generations.

    sft/<split>/part-*.parquet   format `messages`:  uid, [sample, model,] source, domain,
                                     messages=[system?, user, assistant "<think>\\n…\\n</think>\\n\\nanswer"],
                                     answer, pass_rate, n_samples, num_tokens
                                 format `sharegpt`:  the same with conversations=[{from: human|gpt, value}]
                                     and a `system` column (LLaMA-Factory's ShareGPT layout)
    rl/<split>/part-*.parquet    data_source, prompt=[{role: user, content}], ability,
                                     reward_model={style: rule, ground_truth},
                                     extra_info={split, index, uid, source, answer, pass_rate, n_samples}
    README.md                    YAML `configs:` (stages.export.layout): load_dataset(root, "sft" | "rl")

From problem rows (no teacher yet) the SFT rows have the user turn only. From generation rows the
traces go through stages.export.select (up to m correct traces per problem, optionally a budget); the
rows not selected are dropped here with `incorrect` / `unverified` / `empty_reasoning` /
`not_selected` / `over_budget`. A long-CoT set needs reasoning: by default (`require_reasoning`) a
trace whose reasoning is empty (or a stub) never becomes an SFT row (`<think>\n\n</think>` teaches a
model to skip thinking); a short-CoT recipe sets `require_reasoning: false`, and the card says so. The RL
set has one row per problem of the input that has a ground truth (gold answer, or tests for code),
whether or not a trace of it was selected: RL needs the problem, not a trace. Its `data_source` is
the key verl's default reward (`verl.utils.reward_score.default_compute_score`) dispatches on, per
domain (`rl_data_source`; math-like domains: "lighteval/MATH", which scores the last \boxed{} that
the user turn asks for); the source name stays in `extra_info.source`.

Splits: with `validation_fraction`, a problem goes to validation when blake2b(salt:uid) falls under
the fraction: deterministic, the same for SFT and RL (no problem in both splits), stable across runs.
Shards hold at most `shard_rows` rows. Token statistics are labelled with the tokenizer that counted
(stages.export.tokens).

A global stage: the map phase makes a lean index (uid, sample, verdict, trace length, reasoning_words,
domain, source, has a ground truth: no texts); one reduce chooses the traces, the splits and the RL
rows (the first row of each problem with a ground truth, numbered per split in input order) as plan
columns; the apply phase writes each unit's SFT and RL rows into `sft/<split>/` and `rl/<split>/`
(shards named by unit: the same output for any worker count) and tallies their token counts; `finish`
adds the tallies up and writes the README.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages.export.layout import SETS, Sets, SplitCounts, write_export_readme
from stages.export.markers import Markers, assistant_turn
from stages.export.select import SelectConfig, choose, reasoning_words, trace_length, unit_interval
from stages.export.tokens import TokenCounter, TokenSummary, length_stats, token_counter
from stages.stage import Context, Decision, Details, GlobalStage, Plan, ReduceContext, Unit, apply_plan
from stages.store import ShardWriter, shard_paths

DEFAULT_INSTRUCTIONS = {
    "math": "Let's think step by step and output the final answer within \\boxed{}.",
    "science": "Let's think step by step and output the final answer within \\boxed{}.",
    "puzzle": "Let's think step by step and output the final answer within \\boxed{}.",
    "code": "Write a complete Python solution in a single ```python code block.",
    "general": "",
}
# columns a batch may lack (problem rows, or rows before pass_rate) that the outputs always carry
OPTIONAL: dict[str, pl.DataType] = {
    "tests": pl.String(),
    "solution": pl.String(),
    "sources": pl.List(pl.String()),
    "pass_rate": pl.Float64(),
    "n_samples": pl.Int32(),
}
# verl's default_compute_score (verl/utils/reward_score/__init__.py) scores "lighteval/MATH" rows with
# its math reward: the last \boxed{} of the response against ground_truth, which is what the user turn
# asks for in these domains. Code tests are in longcot's format (not prime_code's inputs/outputs), so
# code rows keep their source name and need a custom reward unless a recipe maps them.
DEFAULT_DATA_SOURCES = {"math": "lighteval/MATH", "science": "lighteval/MATH", "puzzle": "lighteval/MATH"}


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["messages", "sharegpt"] = Field("messages", description="layout of the SFT set")
    markers: Markers = Field(
        "think", description="reasoning markers: think (<think>) or thought_solution (OpenThoughts/Sky-T1)"
    )
    system: str | None = Field(None, description="system prompt of every SFT conversation")
    instructions: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_INSTRUCTIONS),
        description="text appended to the problem in the user turn, per domain",
    )
    split: str = Field("train", description="name of the training split")
    validation_fraction: float = Field(0.0, ge=0, lt=1, description="share of problems in validation")
    validation_split: str = "validation"
    split_salt: str = "longcot-split"
    shard_rows: int = Field(100_000, gt=0, description="rows per Parquet shard")
    select: SelectConfig = Field(default_factory=SelectConfig)
    require_reasoning: bool = Field(
        True, description="drop traces with empty reasoning from SFT (false: a short-CoT set)"
    )
    min_reasoning_words: int = Field(
        8, ge=1, description="with require_reasoning: reasoning of fewer words counts as empty (a stub)"
    )
    rl_data_source: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_DATA_SOURCES),
        description="RL data_source per domain (verl's reward dispatch key); other domains: the source name",
    )
    tokenizer: str | None = Field("auto", description="'auto' (MiniLM proxy), a tokenizer path, or null")


def user_prompt(config: ExportConfig) -> pl.Expr:
    instruction = pl.col("domain").replace_strict(config.instructions, default="", return_dtype=pl.String)
    return (
        pl.when(instruction == "")
        .then(pl.col("problem"))
        .otherwise(pl.concat_str(pl.col("problem"), pl.lit("\n\n"), instruction))
    )


def message(role: str, content: pl.Expr) -> pl.Expr:
    return pl.struct(pl.lit(role).alias("role"), content.alias("content"))


def sharegpt_turn(speaker: str, value: pl.Expr) -> pl.Expr:
    return pl.struct(pl.lit(speaker).alias("from"), value.alias("value"))


def ground_truth() -> pl.Expr:
    return pl.coalesce(pl.col("answer"), pl.when(pl.col("domain") == "code").then(pl.col("tests")))


def conversation(config: ExportConfig, traces: bool) -> list[pl.Expr]:
    """The SFT conversation column(s) in the configured layout."""
    user = pl.col("prompt_text")
    if config.format == "sharegpt":
        turns = [
            sharegpt_turn("human", user),
            *([sharegpt_turn("gpt", assistant_turn(config.markers))] if traces else []),
        ]
        return [
            pl.concat_list(turns).alias("conversations"),
            pl.lit(config.system, pl.String).alias("system"),
        ]
    system = [message("system", pl.lit(config.system))] if config.system else []
    turns = [
        *system,
        message("user", user),
        *([message("assistant", assistant_turn(config.markers))] if traces else []),
    ]
    return [pl.concat_list(turns).alias("messages")]


def conversation_text(config: ExportConfig, traces: bool) -> pl.Expr:
    """Every turn's text, for token counting (no chat template: that is the trainer's); no separator
    before an absent system turn, so that without traces the text is the prompt the RL set counts."""
    parts = [*([pl.lit(config.system)] if config.system else []), pl.col("prompt_text")]
    return pl.concat_str([*parts, assistant_turn(config.markers)] if traces else parts, separator="\n")


def sft_rows(batch: pl.DataFrame, config: ExportConfig, traces: bool) -> pl.DataFrame:
    ids = ["uid", "sample", "source", "domain", "model"] if traces else ["uid", "source", "domain"]
    rest = ["answer", "pass_rate", "n_samples"] if traces else ["answer", "solution", "sources"]
    return batch.select(*ids, *conversation(config, traces), *rest, "num_tokens")


def data_source(config: ExportConfig) -> pl.Expr:
    """verl's reward dispatch key for the row's domain, else the source name."""
    return pl.col("domain").replace_strict(
        config.rl_data_source, default=pl.col("source"), return_dtype=pl.String
    )


def rl_rows(problems: pl.DataFrame, config: ExportConfig) -> pl.DataFrame:
    """verl rows of the problems; `rl_index` is the row's running index within its split."""
    return problems.select(
        data_source(config).alias("data_source"),
        pl.concat_list(message("user", pl.col("prompt_text"))).alias("prompt"),
        pl.col("domain").alias("ability"),
        pl.struct(pl.lit("rule").alias("style"), ground_truth().alias("ground_truth")).alias("reward_model"),
        pl.struct(
            "split", pl.col("rl_index").alias("index"), "uid", "source", "answer", "pass_rate", "n_samples"
        ).alias("extra_info"),
    )


def split_of(uids: pl.Series, config: ExportConfig) -> pl.DataFrame:
    """uid -> split, by a stable hash of the uid (see the module docstring)."""
    unique = uids.unique()
    u = unit_interval(unique, config.split_salt)
    return pl.DataFrame({"uid": unique}).with_columns(
        pl.when(u < config.validation_fraction)
        .then(pl.lit(config.validation_split))
        .otherwise(pl.lit(config.split))
        .alias("split")
    )


def with_optional(batch: pl.DataFrame) -> pl.DataFrame:
    """The batch with the OPTIONAL columns it lacks, as nulls."""
    return batch.with_columns(
        pl.lit(None, dtype).alias(c) for c, dtype in OPTIONAL.items() if c not in batch.columns
    )


def lean_index(batch: pl.DataFrame, config: ExportConfig | None = None) -> pl.DataFrame:
    """What the reduce decides on, per row: uid, has_truth; and for traces sample, correct, length,
    reasoning_words, domain, source and the budget's balance column (never the texts)."""
    truth = ground_truth().is_not_null().alias("has_truth")
    if "response" not in batch.columns:
        return batch.select("uid", truth)
    correct = pl.col("correct") if "correct" in batch.columns else pl.lit(None, pl.Boolean)
    return batch.select(
        "uid",
        truth,
        "sample",
        correct.cast(pl.Boolean).alias("correct"),
        trace_length().alias("length"),
        reasoning_words().alias("reasoning_words"),
        "domain",
        "source",
        *balance_columns(batch, config),
    )


def balance_columns(batch: pl.DataFrame, config: ExportConfig | None) -> list[str]:
    """The budget's balance column when it is not domain/source (a label a `classify` step added)."""
    budget = config.select.budget if config is not None else None
    if budget is None or budget.balance_by in ("domain", "source"):
        return []
    if budget.balance_by not in batch.columns:
        raise ValueError(
            f"export: select.budget.balance_by is {budget.balance_by!r} but the input rows have no such "
            "column (add a `classify` step with that `column:` before the export)"
        )
    return [budget.balance_by]


def row_plan(index: pl.DataFrame, config: ExportConfig) -> pl.DataFrame:
    """Per input row (in order): drop_reason and drop_detail of the trace selection (traces only), the
    problem's split, and rl_index: the RL row's index within its split, on the problem's first row
    when it has a ground truth (null elsewhere)."""
    plan = (
        index.join(split_of(index["uid"], config), on="uid", how="left", maintain_order="left")
        .with_columns((pl.col("uid").is_first_distinct() & pl.col("has_truth")).alias("rl"))
        .with_columns(
            pl.when("rl").then(pl.col("rl").cast(pl.Int64).cum_sum().over("split") - 1).alias("rl_index")
        )
    )
    if "length" in index.columns:
        selection = choose(index, config.select, config.require_reasoning, config.min_reasoning_words)
        plan = plan.join(selection, on="idx", how="left", maintain_order="left")
    else:
        plan = plan.with_columns(
            pl.lit(None, pl.String).alias("drop_reason"), pl.lit(None, pl.String).alias("drop_detail")
        )
    return plan.select("drop_reason", "drop_detail", "split", "rl_index")


# ---- report details ----------------------------------------------------------------------------------


class RlExcluded(Details):
    no_ground_truth: int  # problems without a gold answer (or tests, for code): no RL row


class ExportPlanDetails(Details):
    """What reduce knows; `finish` completes it into ExportDetails with the written sets."""

    format: Literal["messages", "sharegpt"]
    long_cot: bool | None  # true: every SFT trace has reasoning; false: short-CoT; null: problem rows
    rl_excluded: RlExcluded
    problems: int
    selection: SelectConfig | None  # null: problem rows, no traces to select


class ExportDetails(ExportPlanDetails):
    sets: Sets
    sft_rows: int
    rl_rows: int
    tokens: TokenSummary


@dataclass
class BatchTally:
    """One applied batch: token counts per `<set>/<split>`, texts estimated, teacher's completion tokens."""

    tokens: dict[str, pl.Series]
    estimated: int
    teacher_tokens: pl.Series | None


# ---- the stage ---------------------------------------------------------------------------------------


class Export(GlobalStage[ExportConfig]):
    name = "export"
    Config = ExportConfig
    Details = ExportDetails
    batch_rows = 20_000  # generation rows carry their reasoning: bounded batches

    @contextmanager
    def open(self, config: ExportConfig, input_dir: Path | None) -> Iterator[TokenCounter]:
        yield token_counter(config.tokenizer)  # loaded once per worker

    def read(
        self, unit: Unit, config: ExportConfig, columns: Sequence[str] | None = None
    ) -> Iterator[pl.DataFrame]:
        for batch in super().read(unit, config, columns):
            yield with_optional(batch)

    def summarize(self, batch: pl.DataFrame, config: ExportConfig, ctx: Context) -> pl.DataFrame:
        return lean_index(batch, config)

    def reduce(self, parts: list[Any], config: ExportConfig, ctx: ReduceContext) -> Plan:
        index = (
            pl.concat(parts, how="vertical_relaxed")
            if parts
            else pl.DataFrame(schema={"uid": pl.String, "has_truth": pl.Boolean})
        ).with_row_index("idx")
        traces = "length" in index.columns
        first = index.filter(pl.col("uid").is_first_distinct())
        details = ExportPlanDetails(
            format=config.format,
            long_cot=config.require_reasoning if traces else None,
            rl_excluded=RlExcluded(no_ground_truth=first.filter(~pl.col("has_truth")).height),
            problems=first.height,
            selection=config.select if traces else None,
        )
        return Plan(row_plan(index, config), details)

    def apply(self, batch: pl.DataFrame, plan: pl.DataFrame, config: ExportConfig, ctx: Context) -> Decision:
        counter: TokenCounter = ctx.state
        traces = "response" in batch.columns
        decision = apply_plan(batch, plan.select("drop_reason", "drop_detail"))
        rows = pl.concat([batch, plan.select("split", "rl_index")], how="horizontal").with_columns(
            user_prompt(config).alias("prompt_text")
        )
        tally = BatchTally({}, 0, None)
        selected = rows.filter(plan["drop_reason"].is_null())
        problems = rows.filter(pl.col("rl_index").is_not_null())  # RL: every problem, selected or not
        # one count for both sets: without traces an SFT text is its RL prompt, encoded once
        texts = pl.concat(
            [
                selected.select(conversation_text(config, traces).alias("text")),
                problems.select(pl.col("prompt_text").alias("text")),
            ],
            how="vertical_relaxed",
        ).to_series()
        tokens = counter.count(texts)
        selected = selected.with_columns(tokens.head(selected.height).alias("num_tokens"))
        problems = problems.with_columns(tokens.tail(problems.height).alias("num_tokens"))
        for name, frame in (("sft", selected), ("rl", problems)):
            for (split,), part in frame.partition_by("split", as_dict=True, maintain_order=True).items():
                key = f"{name}/{split}"
                out = sft_rows(part, config, traces) if name == "sft" else rl_rows(part, config)
                write_cut(ctx.output(key), out, config.shard_rows)
                tally.tokens[key] = part["num_tokens"]
                tally.estimated += part.height if counter.kind == "estimate" else 0
        if traces and "completion_tokens" in batch.columns:
            tally.teacher_tokens = decision.kept["completion_tokens"].drop_nulls()
        decision.tally = tally
        return decision

    def finish(
        self, details: Details, tallies: list[Any], config: ExportConfig, out_dir: Path
    ) -> ExportDetails:
        """Rows, shards and token statistics per set and split; the README.md of the export root."""
        tokens: dict[str, list[pl.Series]] = defaultdict(list)
        for tally in tallies:
            for key, values in tally.tokens.items():
                tokens[key].append(values)
        sets: Sets = {name: {} for name in SETS}
        for key in sorted(tokens):
            name, split = key.split("/")
            values = pl.concat(tokens[key])
            sets[name][split] = SplitCounts(
                rows=values.len(), shards=len(shard_paths(out_dir / key)), tokens=length_stats(values)
            )
        teacher = [t.teacher_tokens for t in tallies if t.teacher_tokens is not None]
        assert isinstance(details, ExportPlanDetails)
        write_export_readme(out_dir, sets, details.long_cot)
        return ExportDetails(
            **dict(details),
            sets=sets,
            sft_rows=sum(c.rows for c in sets["sft"].values()),
            rl_rows=sum(c.rows for c in sets["rl"].values()),
            tokens=token_counter(config.tokenizer).summary(
                sum(t.estimated for t in tallies), length_stats(pl.concat(teacher)) if teacher else None
            ),
        )


def write_cut(writer: ShardWriter, frame: pl.DataFrame, shard_rows: int) -> None:
    """Write `frame` cut at shard boundaries: a shard never holds more than `shard_rows` rows."""
    writer.rows_per_shard = shard_rows
    while frame.height:
        room = shard_rows - writer.rows % shard_rows
        writer.write(frame.head(room))
        frame = frame.slice(room)
