"""Which verified traces go into the SFT set: up to m per problem, and optionally a budget of N problems.

Per problem (policy):
    shortest_correct  the m shortest correct traces (reasoning + response characters)
    random            m correct traces at random (seeded, stable across runs and library versions)
    all               every correct trace (m is ignored)
Budget (s1-style, optional): N problems balanced over groups (domain, source, or an MSC label from a
pluggable classifier) and weighted to longer reasoning: within each group problems are drawn without
replacement with probability proportional to length ** length_weight (Efraimidis-Spirakis keys), and
groups take turns, so every group gets the same share until it runs out.

All decisions are made on a lean index (uid, sample, group, correct, length), never on the texts, so
the export can stream the rows afterwards. Randomness comes from blake2b of (seed, uid[, sample]),
not from polars' hash, whose values may change between versions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages.records import detail_json

# problems -> one label each (e.g. an MSC code from an LLM); used when budget.balance_by is "msc"
Classifier = Callable[[list[str]], list[str]]


class ClassifierNotConfigured(RuntimeError):
    """budget.balance_by is `msc` but no classifier was given."""


class BudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    problems: int = Field(gt=0, description="how many problems to keep")
    balance_by: Literal["domain", "source", "msc"] = "domain"
    length_weight: float = Field(1.0, ge=0, description="selection weight = length ** this; 0 = uniform")


class SelectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Literal["shortest_correct", "random", "all"] = "shortest_correct"
    per_problem: int = Field(1, ge=1, description="m: traces kept per problem (not for policy all)")
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


def _with_random(index: pl.DataFrame, salt: str, *keys: str) -> pl.Series:
    joined = index.select(pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="/")).to_series()
    return unit_interval(joined, salt)


def choose(index: pl.DataFrame, config: SelectConfig, classifier: Classifier | None = None) -> pl.DataFrame:
    """index: uid, sample, correct, length, domain, source (+ problem for msc).
    Returns uid, sample, drop_reason (null = selected), drop_detail."""
    correct = pl.col("correct").fill_null(False)
    order = "length" if config.policy == "shortest_correct" else "_u"
    ranked = (
        index.with_columns(_with_random(index, f"trace{config.seed}", "uid", "sample").alias("_u"))
        .sort(order, "sample")
        .with_columns(
            pl.when(correct).then(pl.int_range(1, pl.len() + 1).over("uid", correct)).alias("_rank")
        )
    )
    limit = None if config.policy == "all" else config.per_problem
    reason = (
        pl.when(pl.col("correct").is_null())
        .then(pl.lit("unverified"))
        .when(~correct)
        .then(pl.lit("incorrect"))
        .when(pl.lit(limit is not None) & (pl.col("_rank") > (limit or 0)))
        .then(pl.lit("not_selected"))
    )
    ranked = ranked.with_columns(reason.alias("drop_reason"))
    budget_detail = pl.lit(None, pl.String)
    if config.budget is not None:
        ranked, budget_detail = _apply_budget(ranked, config, classifier)
    return ranked.select(
        "uid",
        "sample",
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
            )
        )
        .alias("drop_detail"),
    )


def _apply_budget(
    ranked: pl.DataFrame, config: SelectConfig, classifier: Classifier | None
) -> tuple[pl.DataFrame, pl.Expr]:
    budget = config.budget
    assert budget is not None
    chosen = ranked.filter(pl.col("drop_reason").is_null())
    problems = chosen.group_by("uid", maintain_order=True).agg(
        pl.col("length").mean().alias("p_length"),
        pl.col("domain").first(),
        pl.col("source").first(),
        *([pl.col("problem").first()] if "problem" in chosen.columns else []),
    )
    problems = problems.with_columns(_group(problems, budget.balance_by, classifier).alias("group"))
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


def _group(problems: pl.DataFrame, balance_by: str, classifier: Classifier | None) -> pl.Series:
    if balance_by != "msc":
        return problems[balance_by].fill_null("unknown")
    if classifier is None:
        raise ClassifierNotConfigured(
            "select.budget.balance_by is `msc` but no classifier was given: pass classifier=... "
            "(e.g. msc_classifier(a teacher backend)) or balance by domain/source"
        )
    return pl.Series("group", classifier(problems["problem"].to_list()), pl.String)


# ---- MSC labels (s1 classified its problems into Mathematics Subject Classification domains) ----


def load_msc(path: Path) -> list[dict]:
    """The MSC list (../shared/data/meta/s1_msc_domains.jsonl): code, title, prompt."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def msc_messages(problem: str, domains: list[dict]) -> list[dict[str, str]]:
    """A chat request asking for the MSC code of one problem (s1's classification prompt, shortened)."""
    listing = "\n\n".join(d["prompt"] for d in domains)
    return [
        {
            "role": "user",
            "content": "Classify the problem below into one Mathematics Subject Classification domain.\n\n"
            f"{listing}\n\n## Problem\n{problem}\n\n"
            "Reply with the two-digit code only, e.g. `Code: 11`.",
        }
    ]


def parse_msc(reply: str, domains: list[dict]) -> str:
    """The first known two-digit code in a reply, else `unknown`."""
    known = {d["code"] for d in domains}
    for code in re.findall(r"\b(\d{2})\b", reply or ""):
        if code in known:
            return code
    return "unknown"


def msc_classifier(ask: Callable[[list[list[dict[str, str]]]], list[str]], domains: list[dict]) -> Classifier:
    """A Classifier from any chat backend `ask(conversations) -> replies` (e.g. a judge/teacher)."""
    return lambda problems: [parse_msc(r, domains) for r in ask([msc_messages(p, domains) for p in problems])]
