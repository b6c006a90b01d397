"""Two string-level contamination checks that published recipes use, as pure functions over
(training texts, benchmark texts) plus one streaming pass over a stage's input:

* `fuzzy`: rapidfuzz `fuzz.ratio` >= threshold (0-100) between a training text and a benchmark item,
  as OpenThoughts does (open-thoughts/open-thoughts, open_thoughts/decontaminate.py and
  deduplicate.py `fuzz_string_pair`: `process.extract(..., scorer=fuzz.ratio, score_cutoff=95.0)`, no
  preprocessing). rapidfuzz's `cdist` scores a block of rows against every item in C++ threads.
* `digitless`: exact match after dropping non-word characters and digits and lower-casing, as
  Light-R1 does (Qihoo360/Light-R1, decontaminate/character_matching.py `clean_text`): the same
  problem with other numbers is caught; a text that is only digits and punctuation never matches.

Both return (row, item, score) pairs; the stage turns them into hits with the item's text as evidence,
as it does for its embedding and LLM methods.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz import fuzz, process

from stages.store import read_shards

BLOCK_ROWS = 2_000  # training rows scored against every item at once (BLOCK_ROWS x items floats)
EMPTY = pl.DataFrame(schema={"row": pl.Int64, "item": pl.Int32, "score": pl.Float64})


class FuzzyConfig(BaseModel):
    """`fuzzy:` in the decontaminate stage (method `fuzzy`)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(95.0, gt=0, le=100, description="flag when fuzz.ratio (0-100) >= this")
    workers: int = Field(-1, description="rapidfuzz threads (-1: every core)")


def fuzzy_hits(texts: list[str], items: list[str], config: FuzzyConfig, offset: int = 0) -> pl.DataFrame:
    """(row, item, score in [0, 1]) for every pair with fuzz.ratio >= threshold; rows from `offset`."""
    frames = [EMPTY]
    for start in range(0, len(texts), BLOCK_ROWS):
        block = texts[start : start + BLOCK_ROWS]
        scores = process.cdist(
            block, items, scorer=fuzz.ratio, score_cutoff=config.threshold, workers=config.workers
        )
        rows, cols = np.nonzero(scores >= config.threshold)
        frames.append(
            pl.DataFrame(
                {
                    "row": (rows + start + offset).astype(np.int64),
                    "item": cols.astype(np.int32),
                    "score": scores[rows, cols].astype(np.float64) / 100.0,
                }
            )
        )
    return pl.concat(frames)


def digitless_key(text: pl.Expr) -> pl.Expr:
    """Light-R1's clean_text: drop non-word characters, then digits, then lower-case."""
    return text.str.replace_all(r"[^\w]", "").str.replace_all(r"\d+", "").str.to_lowercase()


def digitless_hits(texts: list[str], items: list[str], offset: int = 0) -> pl.DataFrame:
    """(row, item, score 1.0) for every pair whose digit-stripped keys are equal (and not empty)."""
    train = pl.DataFrame({"text": texts}, schema={"text": pl.String}).with_row_index("row")
    bench = pl.DataFrame({"text": items}, schema={"text": pl.String}).with_row_index("item")
    keyed = [
        f.with_columns(digitless_key(pl.col("text")).alias("key")).filter(pl.col("key") != "")
        for f in (train, bench)
    ]
    found = keyed[0].select("row", "key").join(keyed[1].select("item", "key"), on="key")
    return found.select(
        (pl.col("row").cast(pl.Int64) + offset).alias("row"),
        pl.col("item").cast(pl.Int32),
        pl.lit(1.0).alias("score"),
    )


def string_hits(
    input_dir: Path, field: str, method: str, items: list[str], config: FuzzyConfig, batch_rows: int
) -> pl.DataFrame:
    """(row, item, score) of one method (`fuzzy` or `digitless`) over a stage input, rows numbered in
    read order as the stage numbers them."""
    frames, offset = [EMPTY], 0
    for batch in read_shards(input_dir, columns=[field], batch_rows=batch_rows):
        texts = batch[field].cast(pl.String).fill_null("").to_list()
        found = (
            fuzzy_hits(texts, items, config, offset)
            if method == "fuzzy"
            else digitless_hits(texts, items, offset)
        )
        frames.append(found)
        offset += batch.height
    return pl.concat(frames)
