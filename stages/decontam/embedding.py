"""Embedding nearest neighbour: rephrased benchmark problems that share few exact n-grams.

Uses the shared encoder and cache of `stages.embed` (also used by embedding dedup), so benchmark
vectors are encoded once per model and machine and reused by every later run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from stages.embed import Embedder, build_index, search


@dataclass
class EmbeddingIndex:
    """A faiss index over the benchmark items' match texts."""

    embedder: Embedder
    index: Any
    size: int

    @classmethod
    def build(cls, texts: list[str], model: str, cache_dir: Path | None, batch_size: int) -> EmbeddingIndex:
        embedder = Embedder(model, cache_dir=cache_dir, batch_size=batch_size)
        vectors = embedder.encode(texts, progress=False)
        return cls(embedder=embedder, index=build_index(vectors), size=len(texts))

    def nearest(self, texts: list[str], k: int, floor: float) -> pl.DataFrame:
        """The top-k items (row, item, score) of each text with cosine >= floor."""
        schema = {"row": pl.Int64, "item": pl.Int32, "score": pl.Float64}
        if not texts or self.size == 0:
            return pl.DataFrame(schema=schema)
        scores, ids = search(self.index, self.embedder.encode(texts, progress=False), k)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), scores.shape[1])
        frame = pl.DataFrame(
            {"row": rows, "item": ids.ravel().astype(np.int32), "score": scores.ravel().astype(np.float64)},
            schema=schema,
        )
        return frame.filter((pl.col("item") >= 0) & (pl.col("score") >= floor))
