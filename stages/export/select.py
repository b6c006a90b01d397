"""Which verified traces go into the SFT set: up to m per problem, and optionally a budget of N problems.

Per problem (policy):
    shortest_correct  the m shortest correct traces (reasoning + response characters)
    random            m correct traces at random (seeded, stable across runs and library versions)
    all               every correct trace (m is ignored)
With `correct_only: false` every trace is eligible whatever its verdict (s1 kept its teacher's traces
right or wrong), so the policies choose among all of a problem's traces.
Budget (s1-style, optional): N problems balanced over groups (domain or source) and weighted to longer
reasoning: within each group problems are drawn without replacement with probability proportional to
length ** length_weight (Efraimidis-Spirakis keys), and groups take turns, so every group gets the same
share until it runs out. s1 balanced over MSC labels that an LLM assigned: a `classify` step (stages/
classify.py) adds that label column, and `balance_by: msc` names it; a recipe that balances by a column
no earlier step adds is refused at validation (flows.recipe.validate_recipe).

With `require_reasoning` (the export's default for long-CoT sets) a correct trace whose reasoning has
fewer than `min_reasoning_words` words (default 8; empty, whitespace, or a stub such as a small model
echoing "<think> and </think>") is not eligible: it is dropped as `empty_reasoning` and the m traces are
chosen among the others.

All decisions are made on a lean index (idx, uid, sample, group, correct, length, reasoning_words), never
on the texts: the export's map phase makes it, its reduce calls `choose`, and its apply phase streams
the rows. Randomness comes from blake2b of (seed, uid[, sample]), not from polars' hash, whose values
may change between versions.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages.records import detail_json


class BudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    problems: int = Field(gt=0, description="how many problems to keep")
    balance_by: str = Field(
        "domain",
        pattern=r"^[a-z_][a-z0-9_]*$",
        description="domain, source, or a label column a `classify` step added (s1: msc)",
    )
    length_weight: float = Field(1.0, ge=0, description="selection weight = length ** this; 0 = uniform")


class SelectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Literal["shortest_correct", "random", "all"] = "shortest_correct"
    per_problem: int = Field(1, ge=1, description="m: traces kept per problem (not for policy all)")
    correct_only: bool = Field(
        True,
        description="only verified-correct traces are eligible; false: any trace, right, wrong or "
        "unverified (s1 kept its teacher's traces whatever their answer)",
    )
    seed: int = 0
    budget: BudgetConfig | None = None


def unit_interval(keys: pl.Series, salt: str) -> pl.Series:
    """A stable uniform number in [0, 1) per key: blake2b(salt:key). Same key, same number, always."""
    values = [
        int.from_bytes(hashlib.blake2b(f"{salt}:{k}".encode(), digest_size=8).digest(), "big") / 2**64
        for k in keys.to_list()
    ]
    return pl.Series(keys.name, values, pl.Float64)


def trace_length() -> pl.Expr:
    """Characters of reasoning + response: always available, unlike token counts."""
    return (
        pl.col("reasoning").fill_null("").str.len_chars() + pl.col("response").fill_null("").str.len_chars()
    )


def reasoning_words() -> pl.Expr:
    """Words (whitespace-separated runs) of reasoning before the answer; 0 for none."""
    return pl.col("reasoning").fill_null("").str.count_matches(r"\S+").cast(pl.Int64)


def _with_random(index: pl.DataFrame, salt: str, *keys: str) -> pl.Series:
    joined = index.select(pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="/")).to_series()
    return unit_interval(joined, salt)


def choose(
    index: pl.DataFrame, config: SelectConfig, require_reasoning: bool, min_reasoning_words: int = 1
) -> pl.DataFrame:
    """index: idx (the input row), uid, sample, correct, length, reasoning_words, domain, source.
    Returns idx, drop_reason (null = selected), drop_detail; in no particular order."""
    # a trace's verdict lets it through: correct, or any verdict when not correct_only
    verdict_ok = pl.col("correct").fill_null(False) | pl.lit(not config.correct_only)
    thinks = pl.col("reasoning_words") >= min_reasoning_words
    eligible = verdict_ok & (thinks | pl.lit(not require_reasoning))
    order = "length" if config.policy == "shortest_correct" else "_u"
    ranked = (
        index.with_columns(_with_random(index, f"trace{config.seed}", "uid", "sample").alias("_u"))
        .sort(order, "sample")
        .with_columns(
            pl.when(eligible).then(pl.int_range(1, pl.len() + 1).over("uid", eligible)).alias("_rank")
        )
    )
    limit = None if config.policy == "all" else config.per_problem
    reason = (
        pl.when(pl.col("correct").is_null() & pl.lit(config.correct_only))
        .then(pl.lit("unverified"))
        .when(~verdict_ok)
        .then(pl.lit("incorrect"))
        .when(~eligible)
        .then(pl.lit("empty_reasoning"))
        .when(pl.lit(limit is not None) & (pl.col("_rank") > (limit or 0)))
        .then(pl.lit("not_selected"))
    )
    ranked = ranked.with_columns(reason.alias("drop_reason"))
    budget_detail = pl.lit(None, pl.String)
    if config.budget is not None:
        ranked, budget_detail = _apply_budget(ranked, config)
    return ranked.select(
        "idx",
        "drop_reason",
        pl.when(pl.col("drop_reason") == "over_budget")
        .then(budget_detail)
        .when(pl.col("drop_reason").is_not_null())
        .then(
            detail_json(
                policy=config.policy,
                rank=pl.col("_rank"),
                per_problem=limit,
                correct=pl.col("correct"),
                length=pl.col("length"),
                has_reasoning=thinks,
                reasoning_words=pl.col("reasoning_words"),
                require_reasoning=require_reasoning,
                min_reasoning_words=min_reasoning_words,
            )
        )
        .alias("drop_detail"),
    )


def _apply_budget(ranked: pl.DataFrame, config: SelectConfig) -> tuple[pl.DataFrame, pl.Expr]:
    budget = config.budget
    assert budget is not None
    chosen = ranked.filter(pl.col("drop_reason").is_null())
    problems = chosen.group_by("uid", maintain_order=True).agg(
        pl.col("length").mean().alias("p_length"),
        pl.col(budget.balance_by).first().fill_null("unknown").alias("group"),
    )
    u = _with_random(problems, f"budget{config.seed}", "uid")
    groups = problems.select(pl.col("group").unique())
    # -ln(u) / w: the smallest keys are a weighted sample without replacement (Efraimidis-Spirakis)
    problems = (
        problems.with_columns(
            (-u.log() / pl.col("p_length").clip(lower_bound=1).pow(budget.length_weight)).alias("_key")
        )
        .with_columns(pl.col("_key").rank("ordinal").over("group").alias("_turn"))
        .join(
            groups.with_columns(_with_random(groups, f"group{config.seed}", "group").alias("_group_order")),
            on="group",
        )
        .sort("_turn", "_group_order")
        .with_row_index("_order")
        .with_columns((pl.col("_order") < budget.problems).alias("_in_budget"))
    )
    ranked = ranked.join(
        problems.select("uid", "group", "_turn", "_in_budget"), on="uid", how="left", maintain_order="left"
    ).with_columns(
        pl.when(pl.col("drop_reason").is_null() & ~pl.col("_in_budget"))
        .then(pl.lit("over_budget"))
        .otherwise(pl.col("drop_reason"))
        .alias("drop_reason")
    )
    detail = detail_json(
        budget=budget.problems, group=pl.col("group"), turn=pl.col("_turn"), length=pl.col("length")
    )
    return ranked, detail
