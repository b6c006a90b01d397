"""Export (first version): an SFT-ready problem set and an RL set in verl's Parquet layout.

    sft/  uid, source, domain, messages=[{role: user, content}], answer, solution, sources
    rl/   data_source, prompt=[{role: user, content}], ability, reward_model={style, ground_truth},
          extra_info={split, index, uid, source, answer}

Every input row is kept (the SFT set holds all of them); rows without a ground truth (no gold
answer, no tests) cannot be rewarded, so they stay out of rl/ and the report counts them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

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


def chat(content: pl.Expr) -> pl.Expr:
    return pl.concat_list(pl.struct(pl.lit("user").alias("role"), content.alias("content")))


def ground_truth() -> pl.Expr:
    return pl.coalesce(pl.col("answer"), pl.when(pl.col("domain") == "code").then(pl.col("tests")))


def run(input_dir: Path, config: ExportConfig, out: StageWriter) -> dict[str, Any]:
    sft, rl = out.output("sft"), out.output("rl")
    index = 0
    for batch in read_shards(input_dir):
        out.count_in(batch.height)
        out.keep(batch)
        prompted = batch.with_columns(user_prompt(config).alias("prompt_text"))
        sft.write(
            prompted.select(
                "uid",
                "source",
                "domain",
                chat(pl.col("prompt_text")).alias("messages"),
                "answer",
                "solution",
                "sources",
            )
        )
        rewardable = prompted.filter(ground_truth().is_not_null())
        rl.write(
            rewardable.with_row_index("index", offset=index).select(
                pl.col("source").alias("data_source"),
                chat(pl.col("prompt_text")).alias("prompt"),
                pl.col("domain").alias("ability"),
                pl.struct(pl.lit("rule").alias("style"), ground_truth().alias("ground_truth")).alias(
                    "reward_model"
                ),
                pl.struct(
                    pl.lit(config.split).alias("split"),
                    pl.col("index").cast(pl.Int64),
                    "uid",
                    "source",
                    "answer",
                ).alias("extra_info"),
            )
        )
        index += rewardable.height
    sft_rows, rl_rows = sft.close(), rl.close()
    return {"sft_rows": sft_rows, "rl_rows": rl_rows, "rl_excluded": {"no_ground_truth": sft_rows - rl_rows}}
