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
trace whose reasoning is empty or whitespace never becomes an SFT row (`<think>\n\n</think>` teaches a
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
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages.export.layout import SETS, write_export_readme
from stages.export.select import SelectConfig, choose, has_reasoning, trace_length, unit_interval
from stages.export.tokens import TokenCounter, length_stats, token_counter
from stages.store import ShardWriter, StageWriter, read_shards, shard_columns, shard_paths

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


def assistant_turn() -> pl.Expr:
    """R1-style: the reasoning inside <think> tags, then the final response."""
    return pl.concat_str(
        pl.lit("<think>\n"),
        pl.col("reasoning").fill_null(""),
        pl.lit("\n</think>\n\n"),
        pl.col("response").fill_null(""),
    )


def ground_truth() -> pl.Expr:
    return pl.coalesce(pl.col("answer"), pl.when(pl.col("domain") == "code").then(pl.col("tests")))


def conversation(config: ExportConfig, traces: bool) -> list[pl.Expr]:
    """The SFT conversation column(s) in the configured layout."""
    user = pl.col("prompt_text")
    if config.format == "sharegpt":
        turns = [sharegpt_turn("human", user), *([sharegpt_turn("gpt", assistant_turn())] if traces else [])]
        return [
            pl.concat_list(turns).alias("conversations"),
            pl.lit(config.system, pl.String).alias("system"),
        ]
    system = [message("system", pl.lit(config.system))] if config.system else []
    turns = [*system, message("user", user), *([message("assistant", assistant_turn())] if traces else [])]
    return [pl.concat_list(turns).alias("messages")]


def conversation_text(config: ExportConfig, traces: bool) -> pl.Expr:
    """Every turn's text, for token counting (no chat template: that is the trainer's)."""
    parts = [pl.lit(config.system or ""), pl.col("prompt_text")]
    return pl.concat_str([*parts, assistant_turn()] if traces else parts, separator="\n")


def sft_rows(batch: pl.DataFrame, config: ExportConfig, traces: bool) -> pl.DataFrame:
    ids = ["uid", "sample", "source", "domain", "model"] if traces else ["uid", "source", "domain"]
    rest = ["answer", "pass_rate", "n_samples"] if traces else ["answer", "solution", "sources"]
    return batch.select(*ids, *conversation(config, traces), *rest, "num_tokens")


def data_source(config: ExportConfig) -> pl.Expr:
    """verl's reward dispatch key for the row's domain, else the source name."""
    return pl.col("domain").replace_strict(
        config.rl_data_source, default=pl.col("source"), return_dtype=pl.String
    )


def rl_rows(problems: pl.DataFrame, first_index: int, config: ExportConfig) -> pl.DataFrame:
    return problems.with_row_index("index", offset=first_index).select(
        data_source(config).alias("data_source"),
        pl.concat_list(message("user", pl.col("prompt_text"))).alias("prompt"),
        pl.col("domain").alias("ability"),
        pl.struct(pl.lit("rule").alias("style"), ground_truth().alias("ground_truth")).alias("reward_model"),
        pl.struct(
            "split", pl.col("index").cast(pl.Int64), "uid", "source", "answer", "pass_rate", "n_samples"
        ).alias("extra_info"),
    )


def all_problems(batch: pl.DataFrame, seen: set[str]) -> pl.DataFrame:
    """The batch's problems not met in an earlier batch (one row each); records them in `seen`."""
    problems = batch.unique("uid", keep="first", maintain_order=True).filter(~pl.col("uid").is_in(list(seen)))
    seen.update(problems["uid"].to_list())
    return problems


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


def _selection(input_dir: Path, columns: list[str], config: ExportConfig) -> pl.DataFrame:
    """Which traces go into SFT, decided on a lean index of the whole input (not on the texts)."""
    scan = pl.scan_parquet(shard_paths(input_dir))
    index = scan.select(
        "uid",
        "sample",
        pl.col("correct") if "correct" in columns else pl.lit(None, pl.Boolean).alias("correct"),
        trace_length().alias("length"),
        has_reasoning().alias("has_reasoning"),
        "domain",
        "source",
    ).collect()
    return choose(index, config.select, config.require_reasoning)


class _Sets:
    """The SFT and RL shard writers, one per (set, split), opened on first use; and their token counts."""

    def __init__(self, out: StageWriter, shard_rows: int):
        self.out, self.shard_rows = out, shard_rows
        self.writers: dict[str, ShardWriter] = {}
        self.tokens: dict[str, list[pl.Series]] = defaultdict(list)

    def write(self, key: str, frame: pl.DataFrame, tokens: pl.Series) -> None:
        if key not in self.writers:
            self.writers[key] = self.out.output(key)
            self.writers[key].rows_per_shard = self.shard_rows
        writer = self.writers[key]
        while frame.height:  # cut at shard boundaries: a shard never holds more than shard_rows
            room = self.shard_rows - writer.rows % self.shard_rows
            writer.write(frame.head(room))
            frame = frame.slice(room)
        self.tokens[key].append(tokens)

    def rows(self, key: str) -> int:
        return self.writers[key].rows if key in self.writers else 0

    def close(self) -> dict[str, dict[str, Any]]:
        counts: dict[str, dict[str, Any]] = {name: {} for name in SETS}
        for key, writer in sorted(self.writers.items()):
            name, split = key.split("/")
            rows = writer.close()
            tokens = length_stats(pl.concat(self.tokens[key]))
            counts[name][split] = {"rows": rows, "shards": writer.shards, "tokens": tokens}
        return counts


def run(input_dir: Path, config: ExportConfig, out: StageWriter) -> dict[str, Any]:
    columns = shard_columns(input_dir)
    traces = "response" in columns
    selection = _selection(input_dir, columns, config) if traces else None
    uids = [b["uid"] for b in read_shards(input_dir, columns=["uid"])]
    splits = split_of(pl.concat(uids) if uids else pl.Series("uid", [], pl.String), config)
    sets = _Sets(out, config.shard_rows)
    counter: TokenCounter = token_counter(config.tokenizer)
    seen: set[str] = set()  # problems already written to rl/ (generation rows repeat a problem)
    no_truth = 0
    teacher_tokens: list[pl.Series] = []
    for batch in read_shards(input_dir):
        out.count_in(batch.height)
        batch = batch.with_columns(
            pl.lit(None, dtype).alias(c) for c, dtype in OPTIONAL.items() if c not in batch.columns
        )
        problems = all_problems(batch, seen)  # RL: every problem of the input, selected or not
        if selection is not None:
            batch = batch.join(selection, on=["uid", "sample"], how="left", maintain_order="left")
            out.drop(batch.filter(pl.col("drop_reason").is_not_null()))
            batch = batch.filter(pl.col("drop_reason").is_null()).drop("drop_reason", "drop_detail")
        out.keep(batch)
        if traces and "completion_tokens" in batch.columns:
            teacher_tokens.append(batch["completion_tokens"].drop_nulls())
        no_truth += problems.filter(ground_truth().is_null()).height
        for name, frame in (("sft", batch), ("rl", problems.filter(ground_truth().is_not_null()))):
            frame = frame.join(splits, on="uid", how="left", maintain_order="left").with_columns(
                user_prompt(config).alias("prompt_text")
            )
            for (split,), part in frame.partition_by("split", as_dict=True, maintain_order=True).items():
                key = f"{name}/{split}"
                if name == "sft":
                    tokens = counter.count(part.select(conversation_text(config, traces)).to_series())
                    rows = sft_rows(part.with_columns(tokens.alias("num_tokens")), config, traces)
                else:
                    tokens = counter.count(part["prompt_text"])
                    rows = rl_rows(part, sets.rows(key), config)
                sets.write(key, rows, tokens)
    counts = sets.close()
    long_cot = config.require_reasoning if traces else None
    write_export_readme(out.partial, counts, long_cot)
    return {
        "format": config.format,
        # true: every SFT trace has reasoning; false: a short-CoT set; null: problem rows, no traces
        "long_cot": long_cot,
        "sets": counts,
        "sft_rows": sum(s["rows"] for s in counts["sft"].values()),
        "rl_rows": sum(s["rows"] for s in counts["rl"].values()),
        "rl_excluded": {"no_ground_truth": no_truth},
        "problems": len(seen),
        "selection": config.select.model_dump(mode="json") if traces else None,
        "tokens": {
            **counter.summary(),
            "teacher_completion_tokens": length_stats(pl.concat(teacher_tokens)) if teacher_tokens else None,
        },
    }
