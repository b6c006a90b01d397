"""Export: an SFT set and an RL set in verl's Parquet layout, from problems or verified generations.

From problem rows (no teacher yet):
    sft/  uid, source, domain, messages=[{role: user, content}], answer, solution, sources
From generation rows (after generate/verify):
    sft/  uid, sample, source, domain, model, messages=[user, assistant "<think>…</think>answer"], answer
          (only traces the verifier marked correct; the others are dropped with reason `incorrect`)
Both:
    rl/   data_source, prompt=[{role: user, content}], ability, reward_model={style, ground_truth},
          extra_info={split, index, uid, source, answer}  -- one row per problem with a ground truth

Rows without a ground truth (no gold answer, no tests) cannot be rewarded: they stay out of rl/ and
the report counts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages.records import detail_json
from stages.store import StageWriter, read_shards

DEFAULT_INSTRUCTIONS = {
    "math": "Let's think step by step and output the final answer within \\boxed{}.",
    "science": "Let's think step by step and output the final answer within \\boxed{}.",
    "puzzle": "Let's think step by step and output the final answer within \\boxed{}.",
    "code": "Write a complete Python solution in a single ```python code block.",
    "general": "",
}


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instructions: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_INSTRUCTIONS),
        description="text appended to the problem in the user turn, per domain",
    )
    split: str = Field("train", description="`extra_info.split` of the RL rows")


def user_prompt(config: ExportConfig) -> pl.Expr:
    instruction = pl.col("domain").replace_strict(config.instructions, default="", return_dtype=pl.String)
    return (
        pl.when(instruction == "")
        .then(pl.col("problem"))
        .otherwise(pl.concat_str(pl.col("problem"), pl.lit("\n\n"), instruction))
    )


def message(role: str, content: pl.Expr) -> pl.Expr:
    return pl.struct(pl.lit(role).alias("role"), content.alias("content"))


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


def rl_rows(problems: pl.DataFrame, config: ExportConfig, first_index: int) -> pl.DataFrame:
    return problems.with_row_index("index", offset=first_index).select(
        pl.col("source").alias("data_source"),
        pl.concat_list(message("user", pl.col("prompt_text"))).alias("prompt"),
        pl.col("domain").alias("ability"),
        pl.struct(pl.lit("rule").alias("style"), ground_truth().alias("ground_truth")).alias("reward_model"),
        pl.struct(
            pl.lit(config.split).alias("split"), pl.col("index").cast(pl.Int64), "uid", "source", "answer"
        ).alias("extra_info"),
    )


def sft_rows(batch: pl.DataFrame, traces: bool) -> pl.DataFrame:
    if not traces:
        return batch.select(
            "uid",
            "source",
            "domain",
            pl.concat_list(message("user", pl.col("prompt_text"))).alias("messages"),
            "answer",
            "solution",
            "sources",
        )
    return batch.select(
        "uid",
        "sample",
        "source",
        "domain",
        "model",
        pl.concat_list(message("user", pl.col("prompt_text")), message("assistant", assistant_turn())).alias(
            "messages"
        ),
        "answer",
    )


def run(input_dir: Path, config: ExportConfig, out: StageWriter) -> dict[str, Any]:
    sft, rl = out.output("sft"), out.output("rl")
    seen: set[str] = set()  # problems already considered for rl/ (generation rows repeat a problem)
    no_truth = 0
    for batch in read_shards(input_dir):
        out.count_in(batch.height)
        traces = "response" in batch.columns
        if "tests" not in batch.columns:
            batch = batch.with_columns(pl.lit(None, pl.String).alias("tests"))
        prompted = batch.with_columns(user_prompt(config).alias("prompt_text"))
        good = pl.col("correct").fill_null(False) if "correct" in batch.columns else pl.lit(True)
        out.keep(batch.filter(good))
        if traces and "correct" in batch.columns:
            out.drop(
                batch.filter(~good).with_columns(
                    pl.lit("incorrect").alias("drop_reason"),
                    detail_json(
                        verifier=pl.col("verifier"), extracted=pl.col("extracted"), answer=pl.col("answer")
                    ).alias("drop_detail"),
                )
            )
        sft.write(sft_rows(prompted.filter(good), traces))
        problems = prompted.unique("uid", keep="first", maintain_order=True).filter(
            ~pl.col("uid").is_in(list(seen))
        )
        seen.update(problems["uid"].to_list())
        rewardable = problems.filter(ground_truth().is_not_null())
        no_truth += problems.height - rewardable.height
        rl.write(rl_rows(rewardable, config, rl.rows))
    return {"sft_rows": sft.close(), "rl_rows": rl.close(), "rl_excluded": {"no_ground_truth": no_truth}}
