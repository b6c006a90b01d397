"""MinHash-LSH near-duplicate removal, vectorised with numpy (no per-document Python loop).

Why our own implementation: no per-row Python and no num_perm hash functions per shingle; end to end
(`longcot dedup --method minhash` as a process against datasketch and rensa as their users run
them) benchmarks/dedup.py has the numbers (docs/dedup.md). The speed comes from doing every step
array-at-a-time, and from not evaluating num_perm hash functions per shingle:

* shingles: texts are tokenised by polars (math-aware, stages.text.math_text), tokens hashed once,
  word n-gram keys a rolling polynomial over the token-hash array (windows crossing a text's end
  masked out), folded to 32 bits;
* signatures: one-permutation hashing (Li et al. 2012) with `_PLACEMENTS` (8) hash functions per
  shingle instead of num_perm (128): each multiply-add-shift hash ((a*x + b) mod 2^64) >> 32 picks
  a bin and a rank, `np.minimum.at` keeps each bin's smallest rank, and the bins still empty are
  filled by optimal densification (Shrivastava 2017). Per position, P[two signatures agree] is their
  Jaccard, as for classic MinHash, at 1/16 of the hashing; chunks run in threads (numpy releases
  the GIL);
* LSH: band keys by a random linear hash of each band's rows; candidate pairs by sorting, per band,
  the rows whose key repeats (star edges per bucket), no dict of buckets;
* clusters: array union-find (clusters.connected_components).

Where it runs: every per-row step in the map phase (`summarize`, on the runner's worker pool), which
returns band keys, number keys and empty flags and leaves the batch's shingle keys (or signatures) in
a scratch file; reduce reads back only the candidate rows' (exact Jaccard on candidate pairs only).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.arrays import unique_sorted
from stages.dedup import clusters, plots, report
from stages.dedup.exact import numbered_keys
from stages.dedup.pair_check import PAIR_CHECK_HELP
from stages.dedup.policy import key_columns
from stages.engine import release_memory
from stages.stage import Context, GlobalStage, Plan, ReduceContext
from stages.text import SHINGLE_TOKEN_PATTERN, guard_tokens, math_text

MASK32 = np.uint64((1 << 32) - 1)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHINGLES_PER_CHUNK = 1 << 17  # per-chunk temporaries ~3.5 MB; smaller chunks pay numpy call overhead
_PLACEMENTS = 8  # hash functions per shingle (see MinHasher)
_TOKENS_PER_BLOCK = 1 << 16  # n-gram keys are summed in blocks of this many tokens
_ROWS_PER_TOKEN_SLICE = 5_000  # fewer rows than this per thread: tokenise in one call
_PAIRS_PER_CHUNK = 50_000  # pairs whose shingle sets a thread intersects at once (bounds memory)


class MinhashDedupConfig(BaseModel):
    """Configuration of the `minhash_dedup` stage."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        0.55, gt=0, lt=1, description="Jaccard similarity at or above which two rows are duplicates"
    )
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations (signature length)")
    ngram: int = Field(5, ge=1, le=32, description="shingle length, in tokens (word) or characters (char)")
    unit: Literal["word", "char"] = Field("word", description="shingle over word tokens or characters")
    bands: int | None = Field(None, ge=1, description="LSH bands; default: chosen from threshold (with rows)")
    rows: int | None = Field(None, ge=1, description="LSH rows per band; default: chosen from threshold")
    false_positive_weight: float = Field(
        0.2,
        ge=0,
        le=1,
        description="weight of false positives when choosing bands/rows (low: more candidates, fewer misses; "
        "the exact check and the pair check prune them)",
    )
    check: Literal["none", "estimate", "exact"] = Field(
        "exact",
        description="which LSH candidates become edges: all (none), estimated Jaccard >= threshold from the "
        "signatures (estimate), or exact Jaccard of the shingle sets >= threshold (exact; one extra pass)",
    )
    number_guard: bool = Field(True, description="never join rows whose multisets of numbers differ")
    pair_check: bool = Field(True, description=PAIR_CHECK_HELP)
    normalize_math: bool = Field(
        True, description="math-aware normalisation before shingling (stages.text.math_text)"
    )
    field: str = Field("problem", description="text column to compare")
    seed: int = Field(1, description="seed of the hash functions")
    top_clusters: int = Field(20, ge=0, description="largest clusters whose texts go into report.json")

    @model_validator(mode="after")
    def _bands_rows(self) -> MinhashDedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither")
        if self.bands and self.rows and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def lsh_params(self) -> tuple[int, int]:
        if self.bands and self.rows:
            return self.bands, self.rows
        return optimal_bands(self.threshold, self.num_perm, self.false_positive_weight)


# --- LSH parameters ---------------------------------------------------------------------------------


@cache
def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the weighted area of false positives
    (P[candidate] for s < threshold) and false negatives (P[not candidate] for s >= threshold), where
    P[candidate | Jaccard s] = 1 - (1 - s^rows)^bands. All (b, r) pairs are scored at once."""
    b, r = np.meshgrid(np.arange(1, num_perm + 1), np.arange(1, num_perm + 1), indexing="ij")
    ok = b * r <= num_perm
    b, r = b[ok].astype(np.float64), r[ok].astype(np.float64)

    def area(lo: float, hi: float, miss: bool) -> np.ndarray:
        s = np.linspace(lo, hi, 201)
        p = 1.0 - (1.0 - s[None, :] ** r[:, None]) ** b[:, None]
        return np.trapezoid(1.0 - p if miss else p, s, axis=1)

    error = false_positive_weight * area(0.0, threshold, False) + (1 - false_positive_weight) * area(
        threshold, 1.0, True
    )
    best = int(np.argmin(error))
    return int(b[best]), int(r[best])


def candidate_probability(similarity: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """P[two rows with Jaccard `similarity` share a band bucket] (the LSH S-curve)."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=np.float64) ** rows) ** bands


# --- shingles ---------------------------------------------------------------------------------------


def _rng_u64(seed: int, salt: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, salt]).integers(0, 2**64, size=size, dtype=np.uint64)


class Shingled(NamedTuple):
    """Shingles of a batch of texts, and the number key of each (for the number guard)."""

    keys: np.ndarray  # flat uint64 shingle keys < 2^32, text after text
    counts: np.ndarray  # shingles per text
    numbers: np.ndarray  # per text, a hash of its number key (stages.text.number_key): equal iff equal keys


def shingles(
    texts: pl.Series, ngram: int, unit: str = "word", seed: int = 1, threads: int | None = None
) -> Shingled:
    """Shingle keys of each text. A text shorter than `ngram` tokens has one shingle (all its tokens);
    an empty text has none. Word tokens also give the number keys (no second scan of the texts)."""
    texts = texts.fill_null("")
    if unit == "word":
        # polars runs one string kernel on one thread: tokenise slices of the texts in threads
        threads = max(1, min(threads or _threads(), texts.len() // _ROWS_PER_TOKEN_SLICE))
        cuts = [texts.len() * i // threads for i in range(threads + 1)]
        slices = [texts.slice(lo, hi - lo) for lo, hi in itertools.pairwise(cuts)]
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda part: _token_hashes(part, seed), slices))
        lengths, hashes, numbers = (np.concatenate(column) for column in zip(*parts, strict=True))
    else:
        lengths = texts.str.len_chars().to_numpy().astype(np.int64)
        codepoints = np.frombuffer("".join(texts.to_list()).encode("utf-32-le"), dtype=np.uint32)
        hashes = (codepoints.astype(np.uint64) + np.uint64(seed)) * _MIX
        numbers = clusters.number_keys(texts)
    return Shingled(*ngram_keys(hashes, lengths, ngram, seed), numbers)


def _token_hashes(texts: pl.Series, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens per text, hash of every token in order, number key per text) for SHINGLE_TOKEN_PATTERN
    tokens; polars queries, so the GIL is released and slices run in parallel threads.

    The number key is the multiset of a text's numbers and signs (stages.text.number_key) as a sum of
    their hashes: the numbers and signs that key compares are shingle tokens (GUARD_TOKEN), so they
    are picked from the tokens instead of scanning the text again."""
    tokens = (
        texts.to_frame("text")
        .lazy()
        .select(pl.col("text").str.extract_all(SHINGLE_TOKEN_PATTERN).alias("token"))
        .collect()
        .to_series()
    )
    lengths = tokens.list.len().to_numpy().astype(np.int64)
    flat = tokens.explode(empty_as_null=False).drop_nulls()
    guard = np.flatnonzero(guard_tokens(flat))
    numbers = np.zeros(lengths.size, dtype=np.uint64)
    owner = np.repeat(np.arange(lengths.size), lengths)[guard]
    np.add.at(numbers, owner, flat.gather(guard).hash(seed + 1).to_numpy())
    return lengths, flat.hash(seed).to_numpy(), numbers


def _threads() -> int:
    return min(8, os.cpu_count() or 1)


def ngram_keys(
    hashes: np.ndarray, lengths: np.ndarray, ngram: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Combine consecutive token hashes into n-gram keys, never across text boundaries: a rolling
    polynomial over the token-hash array, in cache-sized blocks written straight to the output;
    windows that cross a text's end are masked out, a text shorter than `ngram` gets one key of all
    its tokens."""
    total = hashes.size
    coeff = _rng_u64(seed, 1, ngram) | np.uint64(1)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    counts = np.where(lengths > 0, np.maximum(lengths - ngram + 1, 1), 0)
    m = total - ngram + 1  # positions with a full window
    keep = np.zeros(total, dtype=bool)
    keep[: max(m, 0)] = True
    for j in range(1, ngram):  # windows that start in a text's last ngram-1 tokens
        keep[ends[lengths >= j] - j] = False
    short = np.flatnonzero((lengths > 0) & (lengths < ngram))
    first, size = starts[short], lengths[short]
    whole = np.zeros(short.size, dtype=np.uint64)
    keep[first] = True
    out = np.empty(int(counts.sum()), dtype=np.uint64)
    block = np.empty(min(_TOKENS_PER_BLOCK, max(total, 1)), dtype=np.uint64)
    term = np.empty_like(block)
    written = 0
    with np.errstate(over="ignore"):
        for j in range(ngram - 1):
            inside = size > j
            whole[inside] += hashes[first[inside] + j] * coeff[j]
        for lo in range(0, total, _TOKENS_PER_BLOCK):
            hi = min(lo + _TOKENS_PER_BLOCK, total)
            key = block[: hi - lo]
            full = max(min(hi, m) - lo, 0)
            np.multiply(hashes[lo : lo + full], coeff[0], out=key[:full])
            for j in range(1, ngram):
                key[:full] += np.multiply(hashes[lo + j : lo + j + full], coeff[j], out=term[:full])
            key[full:] = 0
            inside = slice(*np.searchsorted(first, [lo, hi]))
            key[first[inside] - lo] = whole[inside]
            key ^= np.right_shift(key, np.uint64(32), out=term[: hi - lo])  # fold to 32 bits
            key &= MASK32
            kept = key[keep[lo:hi]]
            out[written : written + kept.size] = kept
            written += kept.size
    return out, counts


# --- signatures and bands ----------------------------------------------------------------------------


class MinHasher:
    """MinHash signatures by one-permutation hashing (OPH) with `placements` hash functions instead
    of `num_perm`: each shingle gets `placements` (bin, rank) pairs from multiply-add-shift hashes
    ((a*x + b) mod 2^64) >> 32 and every bin keeps its smallest rank; bins still empty are filled
    by optimal densification. P[two signatures agree at a position] = Jaccard (see docs/dedup.md)."""

    def __init__(
        self, num_perm: int = 128, seed: int = 1, threads: int | None = None, placements: int = _PLACEMENTS
    ):
        self.num_perm = num_perm
        self.seed = seed
        self.a = _rng_u64(seed, 2, placements) | np.uint64(1)
        self.b = _rng_u64(seed, 3, placements)
        self.threads = threads or _threads()

    def signatures(self, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(documents x num_perm) uint32 signatures; a document with no shingles gets all 2^32-1."""
        sig = np.full((counts.size, self.num_perm), MASK32, dtype=np.uint32)
        bounds = np.r_[0, np.cumsum(counts)]
        # document ranges of about _SHINGLES_PER_CHUNK shingles each, hashed in threads (numpy
        # releases the GIL), so temporaries stay a few MB whatever the batch
        cuts = np.searchsorted(bounds, np.arange(0, bounds[-1], _SHINGLES_PER_CHUNK), side="right") - 1
        cuts = np.unique(np.r_[0, cuts, counts.size])

        def work(chunk: tuple[int, int]) -> None:
            lo, hi = chunk
            self._bins(keys[bounds[lo] : bounds[hi]], counts[lo:hi], sig[lo:hi])

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(work, zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)))
        return densify(sig, counts > 0, self.seed)

    def _bins(self, x: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
        """One-permutation hashing of one chunk: out[doc, bin] = min rank of the doc's shingles there."""
        flat = out.reshape(-1)
        base = np.repeat(np.arange(counts.size, dtype=np.int64) * self.num_perm, counts)
        h = np.empty(x.size, dtype=np.uint64)
        rank = np.empty(x.size, dtype=np.uint32)
        cell = np.empty(x.size, dtype=np.int64)
        width, even = np.uint64(self.num_perm), np.uint64(MASK32 - 1)
        with np.errstate(over="ignore"):
            for a, b in zip(self.a, self.b, strict=True):
                np.multiply(x, a, out=h)
                h += b
                h >>= np.uint64(32)  # 32 strongly universal bits t
                h *= width  # t * num_perm: the bin above bit 32, a rank below (even: never 2^32-1)
                np.bitwise_and(h, even, out=rank, casting="unsafe")
                h >>= np.uint64(32)
                np.add(h.view(np.int64), base, out=cell)
                np.minimum.at(flat, cell, rank)


_PROBE_BLOCK = 64


@cache
def _probe_deltas(num_perm: int, seed: int, block: int) -> np.ndarray:
    """Attempts block*64 .. block*64+63 of the probe sequences, as (64 x num_perm) offsets: at attempt
    t, bin i of a document looks at its bin i + delta[t, i] (a uniformly random bin)."""
    donors = np.random.default_rng([seed, 5, block]).integers(0, num_perm, (_PROBE_BLOCK, num_perm))
    return (donors - np.arange(num_perm)).astype(np.int32)


def densify(sig: np.ndarray, nonempty: np.ndarray, seed: int = 1) -> np.ndarray:
    """Optimal densification (Shrivastava 2017), in place: an empty bin i of a non-empty document takes
    the value of the first bin that is non-empty in that document along a random probe sequence of
    bin i that is the same for every document, so P[two signatures agree at bin i] stays their Jaccard."""
    num_perm = sig.shape[1]
    flat = sig.reshape(-1)
    empty = flat == MASK32  # before densification: only these bins may be filled, others donate
    empty.reshape(sig.shape)[~nonempty] = False
    cells = np.flatnonzero(empty)
    if flat.size < 2**31:
        cells = cells.astype(np.int32)
    low = num_perm - 1 if num_perm & (num_perm - 1) == 0 else None
    attempt = 0
    while cells.size:
        deltas = _probe_deltas(num_perm, seed, attempt // _PROBE_BLOCK)[attempt % _PROBE_BLOCK]
        donor = cells + deltas[cells & low if low is not None else cells % num_perm]
        still = empty[donor]
        found = ~still
        flat[cells[found]] = flat[donor[found]]
        cells = cells[still]
        attempt += 1
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int = 1, chunk: int = 4096) -> np.ndarray:
    """(documents x bands) uint64 bucket keys: a random linear hash of each band's `rows` values
    (computed on cache-sized blocks of documents)."""
    coeff = _rng_u64(seed, 4, rows) | np.uint64(1)
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, sig.shape[0], chunk):
            values = sig[lo : lo + chunk, : bands * rows].reshape(-1, bands, rows)
            acc = out[lo : lo + chunk]
            np.multiply(values[:, :, 0], coeff[0], out=acc, dtype=np.uint64)
            for row in range(1, rows):
                acc += values[:, :, row] * coeff[row]
    return out


def estimated_jaccard(sig: np.ndarray, src: np.ndarray, dst: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Fraction of equal signature positions for each pair (an unbiased Jaccard estimate)."""
    out = np.empty(src.size, dtype=np.float64)
    for lo in range(0, src.size, chunk):
        u, v = src[lo : lo + chunk], dst[lo : lo + chunk]
        out[lo : lo + chunk] = (sig[u] == sig[v]).mean(axis=1)
    return out


# --- exact Jaccard --------------------------------------------------------------------------------


class ShingleSets:
    """Shingle keys of selected rows (as shingled, repeats included) as a polars list column, for exact
    Jaccard of pairs: polars' per-row hash-set intersection, on bounded chunks of pairs, instead of one
    sort of every candidate row's shingles."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, rows: np.ndarray):
        # arrays made by polars: `pa.array(ndarray)` would import pandas (~0.5 s) to rule out a Series
        offsets = pl.Series(np.r_[0, np.cumsum(counts)].astype(np.int64)).to_arrow()
        values = pl.Series(keys.astype(np.uint32, copy=False)).to_arrow()
        self.lists = pl.Series(pa.LargeListArray.from_arrays(offsets, values))
        self.sizes = self.lists.list.n_unique().to_numpy().astype(np.int64)
        self.rows = np.asarray(rows, dtype=np.int64)

    def jaccard(self, src: np.ndarray, dst: np.ndarray, chunk: int = _PAIRS_PER_CHUNK) -> np.ndarray:
        a, b = np.searchsorted(self.rows, src), np.searchsorted(self.rows, dst)
        shared = np.zeros(a.size, dtype=np.int64)

        def intersect(lo: int) -> None:  # one polars query per chunk: they run in parallel threads
            pairs = pl.DataFrame(
                {"a": self.lists.gather(a[lo : lo + chunk]), "b": self.lists.gather(b[lo : lo + chunk])}
            )
            shared[lo : lo + chunk] = pairs.select(
                pl.col("a").list.set_intersection("b").list.len()
            ).to_series()

        with ThreadPoolExecutor(_threads()) as pool:
            list(pool.map(intersect, range(0, a.size, chunk)))
        union = self.sizes[a] + self.sizes[b] - shared
        return np.where(union > 0, shared / np.maximum(union, 1), 1.0)


# --- the stage ---------------------------------------------------------------------------------------


@dataclass
class UnitSummary:
    """What the map phase returns per batch: the keep policy's key columns, LSH band keys, number keys
    and an is-empty flag per row (bands x 8 + 9 bytes a row), and the .npz file where the batch's
    evidence for the check waits for reduce: its shingle keys (check `exact`) or its signatures."""

    keys: pl.DataFrame
    bands: np.ndarray
    numbers: np.ndarray
    empty: np.ndarray
    evidence: Path


def summarize_batch(batch: pl.DataFrame, config: MinhashDedupConfig, evidence: Path) -> UnitSummary:
    """The per-row work of the stage on one batch: shingles, signatures, band keys, number keys."""
    compared = pl.col(config.field).fill_null("")
    if config.normalize_math:  # the spacing rewrites change no word token: only characters see them
        compared = math_text(compared, spacing=config.unit == "char")
    text = batch.select(compared).to_series()
    bands, rows = config.lsh_params()
    shingled = shingles(text, config.ngram, config.unit, config.seed)
    sig = MinHasher(config.num_perm, config.seed).signatures(shingled.keys, shingled.counts)
    if config.check == "exact":
        np.savez(evidence, keys=shingled.keys.astype(np.uint32), counts=shingled.counts)
    else:
        np.savez(evidence, signatures=sig)
    return UnitSummary(
        batch.select(key_columns()),
        band_keys(sig, bands, rows, config.seed),
        shingled.numbers,
        shingled.counts == 0,
        evidence,
    )


def gather_evidence(parts: list[UnitSummary], rows: np.ndarray, exact: bool) -> ShingleSets | Signatures:
    """The shingle sets (exact) or signatures of the sorted row indices `rows`, from the batches' files
    (read in parallel threads: numpy releases the GIL for the file reads and the gathers)."""
    starts = np.cumsum([0] + [part.empty.size for part in parts])

    def read(i: int) -> tuple[np.ndarray, np.ndarray] | None:
        lo, hi = np.searchsorted(rows, starts[i : i + 2])
        inside = rows[lo:hi] - starts[i]
        if not inside.size:
            return None
        with np.load(parts[i].evidence) as saved:
            if not exact:
                return saved["signatures"][inside], inside
            own, offsets = saved["counts"], np.r_[0, np.cumsum(saved["counts"])]
            lens = own[inside]
            within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
            return saved["keys"][np.repeat(offsets[inside], lens) + within], lens

    with ThreadPoolExecutor(_threads()) as pool:
        found = [f for f in pool.map(read, range(len(parts))) if f is not None]
    if exact:
        flat = np.concatenate([keys for keys, _ in found]) if found else np.zeros(0, dtype=np.uint32)
        counts = np.concatenate([lens for _, lens in found]) if found else np.zeros(0, dtype=np.int64)
        return ShingleSets(flat, counts, rows)
    sigs = np.concatenate([sig for sig, _ in found]) if found else np.zeros((0, 1), dtype=np.uint32)
    return Signatures(sigs, rows)


@dataclass
class Signatures:
    """Signatures of the sorted row indices `rows`, for the estimated Jaccard of pairs of them."""

    sig: np.ndarray
    rows: np.ndarray

    def jaccard(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        return estimated_jaccard(self.sig, np.searchsorted(self.rows, src), np.searchsorted(self.rows, dst))


def candidate_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs that share a bucket in at least one band (star edges per bucket, deduplicated).
    Only rows whose key repeats in a band (polars' hash-based `is_duplicated`) are sorted. Bands run
    in threads (polars and numpy's sorts release the GIL), each on its own column."""

    def edges(band: int) -> tuple[np.ndarray, np.ndarray]:
        column = np.ascontiguousarray(keys[:, band])
        rows = np.flatnonzero(pl.Series(column).is_duplicated().to_numpy())
        if rows.size == 0:
            return rows, rows
        head, other = clusters.bucket_edges(column[rows])
        return rows[head], rows[other]

    with ThreadPoolExecutor(_threads()) as pool:
        found = list(pool.map(edges, range(keys.shape[1])))
    src = np.concatenate([np.zeros(0, dtype=np.int64), *(head for head, _ in found)])
    dst = np.concatenate([np.zeros(0, dtype=np.int64), *(other for _, other in found)])
    return clusters.unique_edges(src, dst)


class MinhashDedup(GlobalStage[MinhashDedupConfig]):
    """Cluster rows whose shingle sets have Jaccard >= threshold; keep one per cluster.

    Map phase (per unit, on the worker pool): shingles, signatures, band keys, number keys. Reduce (in
    the driver): candidate pairs from the band keys, their similarity (exact Jaccard from the texts of
    the candidate rows only, or the signatures' estimate), the pair check, clusters, the report."""

    name = "minhash_dedup"
    Config = MinhashDedupConfig
    Details = report.NearDupDetails
    batch_rows = 25_000  # a worker's tokens, shingles and signatures of one batch stay ~100 MB

    def summarize(self, batch: pl.DataFrame, config: MinhashDedupConfig, ctx: Context) -> UnitSummary:
        assert ctx.workdir is not None
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        evidence = ctx.workdir / f"minhash-{ctx.row:012d}.npz"  # the batch's first row: unique
        return summarize_batch(batch, config, evidence)

    def reduce(self, parts: list[UnitSummary], config: MinhashDedupConfig, ctx: ReduceContext) -> Plan:
        assert ctx.input_dir is not None
        input_dir = ctx.input_dir
        bands, rows = config.lsh_params()
        band = np.concatenate([p.bands for p in parts]) if parts else np.zeros((0, bands), dtype=np.uint64)
        for part in parts:  # consumed: the runner's list of parts would hold them through reduce (1M: 96 MB)
            part.bands = band[:0]
        numbers = np.concatenate([p.numbers for p in parts]) if parts else np.zeros(0, dtype=np.uint64)
        empty = np.concatenate([p.empty for p in parts]) if parts else np.zeros(0, dtype=bool)
        src, dst = candidate_pairs(band)
        del band
        release_memory()  # the bands' sorts, freed in the threads' heaps: not held through the check
        usable = ~(empty[src] | empty[dst])
        src, dst = src[usable], dst[usable]
        exact = config.check == "exact"
        sets: ShingleSets | Signatures | None = gather_evidence(parts, unique_sorted(np.r_[src, dst]), exact)
        similarity = sets.jaccard(src, dst)
        release_memory()
        if config.pair_check:
            sets = None  # not held while the check runs (1M rows: ~240 MB); gathered again below

        def jaccard(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            """Of pairs of rows (members and their keepers): a candidate pair's is known; the others'
            come from the rows' evidence."""
            out, known = clusters.known_similarity(src, dst, similarity, u, v)
            u, v = u[~known], v[~known]
            if u.size:
                evidence = (
                    sets if sets is not None else gather_evidence(parts, unique_sorted(np.r_[u, v]), exact)
                )
                out[~known] = evidence.jaccard(u, v)
            return out

        numbers_ok = numbers[src] == numbers[dst] if config.number_guard else np.ones(src.size, dtype=bool)
        passes = similarity >= config.threshold if config.check != "none" else np.ones(src.size, dtype=bool)
        texts = (
            clusters.PairTexts(input_dir, config.field, config.normalize_math) if config.pair_check else None
        )
        pairs = clusters.Pairs.decide(
            src, dst, similarity, numbers_ok, passes, texts, config.number_guard, ctx.map
        )
        decisions = clusters.resolve(numbered_keys([p.keys for p in parts]), pairs, jaccard)
        details = report.near_dup_details(
            input_dir,
            field=config.field,
            method="minhash",
            threshold=config.threshold,
            decisions=decisions,
            pairs=pairs,
            top_clusters=config.top_clusters,
            params={
                "num_perm": config.num_perm,
                "bands": bands,
                "rows": rows,
                "ngram": config.ngram,
                "unit": config.unit,
                "check": config.check,
                "number_guard": config.number_guard,
                "pair_check": config.pair_check,
                "normalize_math": config.normalize_math,
            },
        )
        return Plan(
            clusters.near_dup_plan(decisions, "minhash"), details, plots.start_plots(details, ctx.out_dir)
        )
