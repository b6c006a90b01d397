"""Exact dedup: rows whose canonical text is equal (same uid) collapse to one.

A global stage: the map phase reads only the key columns (uid, provenance, has_* flags; texts are
never held), one reduce picks a keeper per uid by the shared policy, and the apply phase splits the
rows by that plan. Memory is O(rows x key size).
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from stages.dedup.plots import start_plots
from stages.dedup.policy import KEY_SOURCES, choose_keepers, dedup_plan, key_columns
from stages.stage import Context, Details, GlobalStage, Plan, ReduceContext


class ExactDedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExactDedupDetails(Details):
    method: str = "exact"
    groups_with_duplicates: int
    largest_group: int
    group_size_histogram: dict[str, int]


def numbered_keys(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The key columns of every input row (the map phase's parts, in input order), numbered `idx`."""
    keys = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(schema=KEY_SCHEMA)
    return keys.with_row_index("idx")


KEY_SCHEMA = {
    "uid": pl.String,
    "source": pl.String,
    "sources": pl.List(pl.String),
    "has_answer": pl.Boolean,
    "has_solution": pl.Boolean,
    "has_tests": pl.Boolean,
}


class ExactDedup(GlobalStage[ExactDedupConfig]):
    name = "exact_dedup"
    Config = ExactDedupConfig
    Details = ExactDedupDetails
    summary_columns = KEY_SOURCES  # never the texts

    def summarize(self, batch: pl.DataFrame, config: ExactDedupConfig, ctx: Context) -> Any:
        return batch.select(key_columns())

    def reduce(self, parts: list[Any], config: ExactDedupConfig, ctx: ReduceContext) -> Plan:
        decisions = choose_keepers(numbered_keys(parts), group="uid")
        groups = decisions.filter("is_keeper").get_column("group_size")
        details = ExactDedupDetails(
            groups_with_duplicates=int((groups > 1).sum()),
            largest_group=int(groups.max() or 0),
            group_size_histogram={
                str(size): n for size, n in groups.value_counts().sort("group_size").iter_rows() if size > 1
            },
        )
        return Plan(
            dedup_plan(decisions, "exact", similarity=1.0), details, start_plots(details, ctx.out_dir)
        )
