"""Embedding near-duplicate removal: rows whose (math-normalised) texts embed within a cosine
threshold of each other are clustered and one row per cluster is kept.

Catches rewordings that share few word n-grams (what MinHash misses), at the cost of a model pass
(cached on disk, stages/embed.py). Small sentence encoders are nearly blind to numbers, so the
number guard (on by default) keeps "Compute $\\binom{8}{4}$" and "Compute $\\binom{9}{4}$" apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages import embed
from stages.arrays import first_of_each
from stages.dedup import clusters, plots, report
from stages.dedup.exact import numbered_keys
from stages.dedup.pair_check import PAIR_CHECK_HELP
from stages.dedup.policy import KEY_SOURCES, key_columns
from stages.stage import Context, GlobalStage, Plan, ReduceContext

HISTOGRAM_SPAN = 0.3


class EmbeddingDedupConfig(BaseModel):
    """Configuration of the `embedding_dedup` stage."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(embed.DEFAULT_MODEL, description="sentence-transformers model name or local path")
    threshold: float = Field(
        0.9, gt=0, le=1, description="cosine similarity at or above which rows are duplicates"
    )
    neighbors: int = Field(10, ge=1, le=1000, description="nearest neighbours searched per row")
    number_guard: bool = Field(True, description="never join rows whose multisets of numbers differ")
    pair_check: bool = Field(True, description=PAIR_CHECK_HELP)
    normalize_math: bool = Field(
        True, description="math-aware normalisation before embedding (stages.text.math_text)"
    )
    field: str = Field("problem", description="text column to compare")
    batch_size: int = Field(64, ge=1, description="encoder batch size")
    device: str | None = Field(None, description="torch device; default CUDA when available, else CPU")
    cache_dir: Path | None = Field(
        None,
        description="embedding cache; default $LONGCOT_CACHE_DIR/embeddings or ~/.cache/longcot/embeddings",
    )
    exact_limit: int = Field(
        embed.EXACT_LIMIT, ge=1, description="exact faiss search up to this many rows, HNSW above"
    )
    progress: bool = Field(True, description="show an encoding progress bar")
    top_clusters: int = Field(20, ge=0, description="largest clusters whose texts go into report.json")


def neighbour_pairs(
    vectors: np.ndarray, k: int, floor: float, exact_limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected pairs (i < j) among each row's k nearest neighbours with cosine >= floor."""
    n = vectors.shape[0]
    scores, ids = embed.knn(vectors, vectors, min(k + 1, max(n, 1)), exact_limit)
    src = np.repeat(np.arange(n, dtype=np.int64), ids.shape[1])
    dst, sim = ids.ravel(), scores.ravel().astype(np.float64)
    ok = (dst >= 0) & (dst != src) & (sim >= floor)
    lo, hi, sim = np.minimum(src, dst)[ok], np.maximum(src, dst)[ok], sim[ok]
    packed, first = first_of_each((lo << 32) | hi)
    return packed >> 32, packed & 0xFFFFFFFF, np.minimum(sim[first], 1.0)


class EmbeddingDedup(GlobalStage[EmbeddingDedupConfig]):
    """Cluster rows with cosine >= threshold among their nearest neighbours; keep one per cluster."""

    name = "embedding_dedup"
    Config = EmbeddingDedupConfig
    Details = report.NearDupDetails
    parallel = False  # the encoder uses every core itself
    summary_columns = KEY_SOURCES  # never the texts

    def summarize(self, batch: pl.DataFrame, config: EmbeddingDedupConfig, ctx: Context) -> Any:
        return batch.select(key_columns())

    def reduce(self, parts: list[Any], config: EmbeddingDedupConfig, ctx: ReduceContext) -> Plan:
        assert ctx.input_dir is not None
        input_dir = ctx.input_dir
        texts_parts = list(clusters.iter_texts(input_dir, config.field, config.normalize_math))
        texts = pl.concat(texts_parts) if texts_parts else pl.Series("text", [], dtype=pl.String)
        embedder = embed.Embedder(config.model, config.cache_dir, config.batch_size, config.device)
        vectors = (
            embedder.encode(texts.to_list(), progress=config.progress)
            if texts.len()
            else np.zeros((0, 1), np.float32)
        )
        src, dst, similarity = neighbour_pairs(
            vectors, config.neighbors, config.threshold - HISTOGRAM_SPAN, config.exact_limit
        )
        empty = (texts.str.len_chars() == 0).to_numpy()
        usable = ~(empty[src] | empty[dst])
        src, dst, similarity = src[usable], dst[usable], similarity[usable]
        numbers = clusters.number_keys(texts)
        numbers_ok = numbers[src] == numbers[dst] if config.number_guard else np.ones(src.size, dtype=bool)
        pairs = clusters.Pairs.decide(
            src,
            dst,
            similarity,
            numbers_ok,
            similarity >= config.threshold,
            clusters.PairTexts(input_dir, config.field, config.normalize_math) if config.pair_check else None,
            config.number_guard,
            ctx.map,
        )
        decisions = clusters.resolve(
            numbered_keys(parts),
            pairs,
            lambda u, v: np.minimum(np.einsum("ij,ij->i", vectors[u], vectors[v]), 1.0),
        )
        details = report.near_dup_details(
            input_dir,
            field=config.field,
            method="embedding",
            threshold=config.threshold,
            decisions=decisions,
            pairs=pairs,
            top_clusters=config.top_clusters,
            params={
                "model": embed.model_id(config.model),
                "neighbors": config.neighbors,
                "number_guard": config.number_guard,
                "pair_check": config.pair_check,
                "normalize_math": config.normalize_math,
                "dimension": int(vectors.shape[1]) if vectors.size else None,
                "texts_encoded": embedder.encoded,
                "texts_from_cache": texts.len() - embedder.encoded,
            },
        )
        return Plan(
            clusters.near_dup_plan(decisions, "embedding"), details, plots.start_plots(details, ctx.out_dir)
        )
