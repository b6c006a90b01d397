"""Which row of a duplicate group survives, and what it inherits from the others.

Policy (documented in docs/architecture.md): prefer the row that has a gold answer, then one with a
reference solution, then one with tests, then the earliest row in input order (sources in recipe order).
The survivor's `sources` becomes the union of the group's sources (its own first, then in the order
above), so provenance is never lost.
"""

from __future__ import annotations

import polars as pl

from stages.records import detail_json

PREFERRED = ("answer", "solution", "tests")  # in order of preference


def has(col: str) -> pl.Expr:
    return (pl.col(col).is_not_null() & (pl.col(col).str.strip_chars() != "")).alias(f"has_{col}")


# the input columns `key_columns` reads: a map phase that needs nothing else reads only these
KEY_SOURCES = ("uid", "source", "sources", *PREFERRED)


def key_columns() -> list[pl.Expr]:
    """What the policy needs of each row: identity, provenance and which fields it has."""
    return [pl.col("uid"), pl.col("source"), pl.col("sources"), *(has(c) for c in PREFERRED)]


def choose_keepers(keys: pl.DataFrame, group: str) -> pl.DataFrame:
    """For rows with columns `idx`, `group` and `key_columns()`: per idx, whether it is kept, the uid and
    source of its group's keeper (`keeper_idx` doubles as a cluster id), the group's merged
    sources and size. Sorted by idx."""
    ranked = keys.sort([*(f"has_{c}" for c in PREFERRED), "idx"], descending=[True, True, True, False])
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


def dedup_plan(decisions: pl.DataFrame, method: str, **evidence: pl.Expr | float) -> pl.DataFrame:
    """A runner plan from `choose_keepers` decisions: keepers stay and take the group's merged
    sources; the others are dropped as `duplicate`, naming their keeper and the evidence."""
    detail = detail_json(
        duplicate_of=pl.col("keeper_uid"),
        method=method,
        **evidence,
        kept_source=pl.col("keeper_source"),
    )
    return decisions.select(
        pl.when("is_keeper").then(pl.col("group_sources")).alias("sources"),
        pl.when("is_keeper").then(None).otherwise(pl.lit("duplicate")).alias("drop_reason"),
        pl.when("is_keeper").then(None).otherwise(detail).alias("drop_detail"),
    )
