"""Exact dedup: rows whose canonical text is equal (same uid) collapse to one.

Two streaming passes keep memory at O(rows x key size): pass 1 reads only the key columns and
decides keepers; pass 2 streams full rows again and splits them into kept and dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from stages.dedup.policy import choose_keepers, key_columns
from stages.records import PROBLEM_SCHEMA, detail_json
from stages.store import StageWriter, read_shards, shard_paths


class ExactDedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


def read_keys(input_dir: Path) -> pl.DataFrame:
    """The policy's key columns of every input row, numbered in input order. One streaming query
    over all shards: text columns are reduced to has_* flags as they are read, never held."""
    paths = shard_paths(input_dir)
    rows = pl.scan_parquet(paths) if paths else pl.LazyFrame(schema=PROBLEM_SCHEMA)
    return rows.select(key_columns()).with_row_index("idx").collect(engine="streaming")


def split_by_decision(input_dir: Path, decisions: pl.DataFrame, out: StageWriter, detail: pl.Expr) -> None:
    """Stream rows again; keepers get the merged sources, the others are dropped with `detail`."""
    offset = 0
    for batch in read_shards(input_dir):
        out.count_in(batch.height)
        decided = pl.concat([batch, decisions.slice(offset, batch.height).drop("idx")], how="horizontal")
        offset += batch.height
        kept = decided.filter("is_keeper").with_columns(pl.col("group_sources").alias("sources"))
        out.keep(kept.select(batch.columns))
        dropped = decided.filter(~pl.col("is_keeper")).with_columns(
            pl.lit("duplicate").alias("drop_reason"), detail.alias("drop_detail")
        )
        out.drop(dropped.select(*batch.columns, "drop_reason", "drop_detail"))


def run(input_dir: Path, config: ExactDedupConfig, out: StageWriter) -> dict[str, Any]:
    decisions = choose_keepers(read_keys(input_dir), group="uid")
    detail = detail_json(
        duplicate_of=pl.col("keeper_uid"), method="exact", similarity=1.0, kept_source=pl.col("keeper_source")
    )
    split_by_decision(input_dir, decisions, out, detail)
    groups = decisions.filter("is_keeper").get_column("group_size")
    return {
        "method": "exact",
        "groups_with_duplicates": int((groups > 1).sum()),
        "largest_group": int(groups.max() or 0),
        "group_size_histogram": {
            str(size): n for size, n in groups.value_counts().sort("group_size").iter_rows() if size > 1
        },
    }
