"""Which row of a duplicate group survives, and what it inherits from the others.

Policy (documented in docs/architecture.md): prefer the row that has a gold answer, then one with a
reference solution, then one with tests, then the earliest row in input order (sources in recipe order).
The survivor's `sources` becomes the union of the group's sources (its own first, then in the order
above), so provenance is never lost.
"""

from __future__ import annotations

import polars as pl

KEY_COLUMNS = ["uid", "source", "sources", "answer", "solution", "tests"]


def has(col: str) -> pl.Expr:
    return pl.col(col).is_not_null() & (pl.col(col).str.strip_chars() != "")


def choose_keepers(keys: pl.DataFrame, group: str) -> pl.DataFrame:
    """For rows with columns `idx`, `group` and KEY_COLUMNS: per idx, whether it is kept, the uid and
    source of its group's keeper (`keeper_idx` doubles as a cluster id), the group's merged
    sources and size. Sorted by idx."""
    ranked = keys.sort(
        [has("answer"), has("solution"), has("tests"), pl.col("idx")],
        descending=[True, True, True, False],
    )
    keepers = ranked.group_by(group, maintain_order=True).agg(
        pl.col("idx").first().alias("keeper_idx"),
        pl.col("uid").first().alias("keeper_uid"),
        pl.col("source").first().alias("keeper_source"),
        pl.col("sources")
        .list.explode(keep_nulls=False, empty_as_null=False)
        .unique(maintain_order=True)
        .alias("group_sources"),
        pl.len().alias("group_size"),
    )
    return (
        keys.select("idx", group)
        .join(keepers, on=group, how="left")
        .with_columns((pl.col("idx") == pl.col("keeper_idx")).alias("is_keeper"))
        .drop(group)
        .sort("idx")
    )
