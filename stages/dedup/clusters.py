"""Candidate pairs -> clusters -> keep decisions, shared by MinHash and embedding dedup.

Both methods produce similarity edges between row indices; everything after that is common:
drop edges that fail the threshold or the number guard, join the rest into clusters with a
vectorised union-find, let the shared keep policy (policy.py) pick one row per cluster, and plan
kept/dropped rows with drop_detail = {duplicate_of, method, similarity, cluster, kept_source}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from stages.arrays import unique_sorted
from stages.dedup import pair_check
from stages.dedup.policy import choose_keepers, dedup_plan
from stages.stage import Mapper, in_process
from stages.store import read_shards, take_rows
from stages.text import math_text, number_key


def connected_components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Cluster label (smallest member index) of each of `n` nodes, given undirected edges.

    Union-find done array-at-a-time: every edge hooks the larger root under the smaller one
    (`np.minimum.at`), then pointer jumping compresses paths; repeat until no edge spans two roots.
    O((n + edges) log n) numpy work, no Python loop over edges.
    """
    parent = np.arange(n, dtype=np.int64)
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    while src.size:
        ru, rv = parent[src], parent[dst]
        spanning = ru != rv
        if not spanning.any():
            break
        ru, rv = ru[spanning], rv[spanning]
        lo, hi = np.minimum(ru, rv), np.maximum(ru, rv)
        np.minimum.at(parent, hi, lo)
        while True:  # pointer jumping: every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        src, dst = src[spanning], dst[spanning]
    return parent


def bucket_edges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with equal keys, as star edges (first row in input order, other row): k-1 edges per
    bucket of k instead of k(k-1)/2 pairs, which is all union-find needs."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    head = order[np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))]
    return head[~starts], order[~starts]


def unique_edges(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges without self-loops or repeats, as (smaller, larger) index pairs."""
    lo, hi = np.minimum(src, dst).astype(np.int64), np.maximum(src, dst).astype(np.int64)
    keep = lo != hi
    packed = unique_sorted((lo[keep] << 32) | hi[keep])
    return packed >> 32, packed & 0xFFFFFFFF


def known_similarity(
    src: np.ndarray, dst: np.ndarray, similarity: np.ndarray, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The similarity of each pair (u[i], v[i]) that is one of the pairs (src, dst) (as `unique_edges`
    returns them: src < dst, sorted), and whether it is; the others' similarity is NaN."""
    pairs = (np.asarray(src, dtype=np.int64) << 32) | np.asarray(dst, dtype=np.int64)
    asked = (np.minimum(u, v).astype(np.int64) << 32) | np.maximum(u, v).astype(np.int64)
    at = np.minimum(np.searchsorted(pairs, asked), max(pairs.size - 1, 0))
    known = pairs[at] == asked if pairs.size else np.zeros(asked.size, dtype=bool)
    out = np.full(asked.size, np.nan)
    out[known] = similarity[at[known]]
    return out, known


def _text_expr(field: str, normalize_math: bool) -> pl.Expr:
    return (math_text(pl.col(field)) if normalize_math else pl.col(field)).fill_null("").alias("text")


def compared_texts(batch: pl.DataFrame, field: str, normalize_math: bool) -> pl.Series:
    """The text of each row as compared for similarity (math-normalised if asked; null as "")."""
    return batch.select(_text_expr(field, normalize_math)).to_series()


def iter_texts(
    input_dir: Path, field: str, normalize_math: bool, batch_rows: int = 50_000
) -> Iterator[pl.Series]:
    """The text compared for similarity, batch by batch in input order (math-normalised if asked)."""
    for batch in read_shards(input_dir, columns=[field], batch_rows=batch_rows):
        yield compared_texts(batch, field, normalize_math)


def read_rows(input_dir: Path, field: str, rows: np.ndarray, normalize_math: bool = False) -> pl.DataFrame:
    """The given row indices' texts, in the order given: `text` as compared (math-normalised if asked)
    and `raw` as written (the pair check reads names from its capitals)."""
    return take_rows(input_dir, rows, [field]).select(
        _text_expr(field, normalize_math), pl.col(field).fill_null("").alias("raw")
    )


def number_keys(texts: pl.Series) -> np.ndarray:
    """Per row, a hash of the multiset of numbers in its (normalised) text: see `stages.text.number_key`."""
    keys = pl.DataFrame({"t": texts}).select(number_key(pl.col("t")).hash(seed=7))
    return keys.to_series().to_numpy()


_PAIRS_PER_CHECK = 25_000  # pairs a pair-check job holds the texts and features of


@dataclass(frozen=True)
class PairTexts:
    """Where the pair check reads candidate rows' texts: each job reads its own rows, so neither the
    driver nor any worker holds the texts of every candidate row."""

    input_dir: Path
    field: str
    normalize_math: bool


def check_job(job: tuple[PairTexts, np.ndarray, np.ndarray, tuple[str, ...]]) -> np.ndarray:
    """The pair check of one chunk of pairs (row indices src[i], dst[i]), on a worker."""
    texts, src, dst, rules = job
    rows = unique_sorted(np.r_[src, dst])
    frame = read_rows(texts.input_dir, texts.field, rows, texts.normalize_math)
    feats = pair_check.features(frame["text"], frame["raw"])
    return pair_check.check_pairs(feats, np.searchsorted(rows, src), np.searchsorted(rows, dst), rules)


@dataclass
class Pairs:
    """Candidate pairs (src < dst row indices) with their similarity, whether their numbers agree,
    the pair-check rule that kept them apart (None: none did, or not checked) and whether they
    became a cluster edge. Kept for the report's similarity distribution and examples."""

    src: np.ndarray
    dst: np.ndarray
    similarity: np.ndarray
    numbers_ok: np.ndarray
    kept_by: np.ndarray
    edge: np.ndarray

    @classmethod
    def decide(
        cls,
        src: np.ndarray,
        dst: np.ndarray,
        similarity: np.ndarray,
        numbers_ok: np.ndarray,
        passes: np.ndarray,
        texts: PairTexts | None,
        number_guard: bool = True,
        map_jobs: Mapper = in_process,
    ) -> Pairs:
        """Edges: pairs that pass the threshold and the number guard and that the pair check
        (`pair_check.check_pairs` on the rows' `texts`; skipped when None) does not keep apart. The
        check runs in chunks of pairs (a head row's pairs together), as jobs on `map_jobs` (the run's
        workers; default this process).
        With the check on, the guard above the threshold is the check's `numbers` rule: numbers
        spelt out count, and an annotation's numbers (a credit line) do not (`pair_check.numbers_differ`)."""
        kept_by = np.full(src.size, None, dtype=object)
        todo = np.flatnonzero(passes)
        if texts is not None and todo.size:
            rules = pair_check.RULES if number_guard else pair_check.TEXT_RULES
            order = todo[np.argsort(src[todo], kind="stable")]
            chunks = np.array_split(order, -(-order.size // _PAIRS_PER_CHECK))
            for chunk, reasons in zip(
                chunks, map_jobs(check_job, [(texts, src[c], dst[c], rules) for c in chunks]), strict=True
            ):
                kept_by[chunk] = reasons
            guarded = todo[kept_by[todo] == "numbers"]  # the number guard's decision, refined by the check
            numbers_ok = numbers_ok.copy()
            numbers_ok[todo] = True
            numbers_ok[guarded] = False
            kept_by[guarded] = None
        edge = passes & numbers_ok & np.equal(kept_by, None)
        return cls(src, dst, similarity, numbers_ok, kept_by, edge)


def resolve(
    keys: pl.DataFrame, pairs: Pairs, similarity: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> pl.DataFrame:
    """Clusters from the edges, keepers by the shared policy (policy.choose_keepers), and each row's
    `similarity` to its keeper (`similarity(rows, keepers)`; 1.0 for keepers). `keys` are the key
    columns of every input row numbered `idx` (exact.numbered_keys). One row per input row, in input
    order; `row_source` is the row's own source."""
    n = keys.height
    labels = connected_components(n, pairs.src[pairs.edge], pairs.dst[pairs.edge])
    decisions = choose_keepers(
        keys.with_columns(pl.Series("cluster", labels, dtype=pl.Int64)), group="cluster"
    )
    keeper = decisions["keeper_idx"].to_numpy().astype(np.int64)
    members = np.flatnonzero(keeper != np.arange(n))
    to_keeper = np.ones(n)
    if members.size:
        to_keeper[members] = similarity(members, keeper[members])
    return decisions.with_columns(
        pl.Series("similarity", np.round(to_keeper, 4), dtype=pl.Float64), keys["source"].alias("row_source")
    )


def near_dup_plan(decisions: pl.DataFrame, method: str) -> pl.DataFrame:
    """The runner plan: each dropped row names its keeper, its similarity to it and its cluster."""
    return dedup_plan(decisions, method, similarity=pl.col("similarity"), cluster=pl.col("keeper_idx"))
