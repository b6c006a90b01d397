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
    """A faiss index over the benchmark items' match texts; `ids` are the item numbers they stand for."""

    embedder: Embedder
    index: Any
    ids: np.ndarray

    @classmethod
    def build(
        cls,
        texts: list[str],
        model: str,
        cache_dir: Path | None,
        batch_size: int,
        ids: np.ndarray | None = None,
    ) -> EmbeddingIndex:
        embedder = Embedder(model, cache_dir=cache_dir, batch_size=batch_size)
        vectors = embedder.encode(texts, progress=False)
        ids = np.arange(len(texts), dtype=np.int32) if ids is None else ids.astype(np.int32)
        return cls(embedder=embedder, index=build_index(vectors), ids=ids)

    def nearest(self, texts: list[str], k: int, floor: float) -> pl.DataFrame:
        """The top-k items (row, item, score) of each text with cosine >= floor."""
        schema = {"row": pl.Int64, "item": pl.Int32, "score": pl.Float64}
        if not texts or len(self.ids) == 0:
            return pl.DataFrame(schema=schema)
        scores, ids = search(self.index, self.embedder.encode(texts, progress=False), k)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), scores.shape[1])
        found = ids.ravel()
        keep = (found >= 0) & (scores.ravel() >= floor)
        return pl.DataFrame(
            {
                "row": rows[keep],
                "item": self.ids[found[keep]],
                "score": scores.ravel()[keep].astype(np.float64),
            },
            schema=schema,
        )
