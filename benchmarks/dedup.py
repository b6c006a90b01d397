"""Near-dup benchmark, all on the same generated data in one run.

(a) MinHash-LSH over N math-like problems (default 200,000: real problems from ../shared/data/sources
    with numbers re-drawn, plus ~25% near-duplicates made by controlled edits) with our vectorised
    implementation against datasketch MinHash.bulk + MinHashLSH, same shingles (word 5-grams of the
    math-normalised text), same num_perm, threshold and (bands, rows). Timed on each side:
      ours:       normalised texts -> shingle keys (tokenise, hash, n-grams) -> signatures -> band
                  keys -> candidate pairs -> estimate check -> union-find cluster labels;
      datasketch: our shingle keys as 4-byte strings (building those lists is NOT timed) ->
                  MinHash.bulk -> MinHashLSH insert (insertion session) + query of every row ->
                  the same estimate check (MinHash.jaccard per pair) -> the same union-find.
    The math normalisation (shared by both) is timed once and reported apart. Recall of both against
    exact Jaccard on a sample of rows (all pairs with Jaccard >= threshold, found with an inverted
    index), next to what the LSH S-curve predicts for those pairs.
    Then the full `minhash_dedup` stage (Parquet in, kept/dropped shards + report out) and peak RSS.
(b) Embedding throughput of stages.embed.Embedder (cold cache) against SentenceTransformer.encode
    on the same texts, the cached re-run, and faiss search times.

    .venv/bin/python benchmarks/dedup.py [--rows 200000] [--datasketch-rows N] [--embed-texts 1000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import re
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from stages import embed
from stages.collect import FieldMap, file_sources
from stages.dedup import clusters, minhash
from stages.registry import run_stage
from stages.text import math_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = {
    "deepscaler_train_math": "problem",
    "deepscaler_train_aime": "problem",
    "omni_math_rule": "problem",
    "gsm8k_train": "question",
}
VERBS = {
    "Find": "Determine",
    "Determine": "Find",
    "Compute": "Calculate",
    "Calculate": "Compute",
    "What is": "Find",
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import datasketch
    import faiss
    import sentence_transformers
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"numpy {np.__version__}, polars {pl.__version__}, datasketch {datasketch.__version__}, faiss {faiss.__version__}, "
        f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}"
    )


# --- data ----------------------------------------------------------------------------------------


def base_problems(data_dir: Path) -> list[str]:
    texts = []
    for name, field in SOURCES.items():
        with (data_dir / "sources" / f"{name}.jsonl").open(encoding="utf-8") as f:
            texts += [json.loads(line)[field] for line in f]
    return [t for t in texts if t and len(t) < 2000]


def redraw_numbers(text: str, rng: random.Random) -> str:
    return re.sub(r"\d+", lambda m: str(rng.randint(2, 10 ** min(len(m.group()) + 1, 6))), text)


def near_edit(text: str, rng: random.Random) -> str:
    """One controlled edit that leaves the same problem."""
    kind = rng.randrange(5)
    if kind == 0:
        return (
            re.sub(
                r"\b(Find|Determine|Compute|Calculate|What is)\b", lambda m: VERBS[m.group(1)], text, count=1
            )
            + " "
        )
    if kind == 1:
        return f"Problem {rng.randint(1, 99)}. {text}"
    if kind == 2:
        return re.sub(r"\$([^$]+)\$", r"\\(\1\\)", text).replace(r"\frac", r"\dfrac") + " "
    words = text.split(" ")
    i = rng.randrange(len(words))
    if kind == 3 and len(words) > 20:
        return " ".join(words[:i] + words[i + 1 :])
    return " ".join([*words[:i], rng.choice(["then", "now", "also"]), *words[i:]])


def generate(data_dir: Path, rows: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    bases = base_problems(data_dir)
    out: list[str] = []
    while len(out) < rows:
        if out and rng.random() < 0.25:
            out.append(near_edit(out[rng.randrange(len(out))], rng))
        else:
            out.append(redraw_numbers(rng.choice(bases), rng))
    return out


# --- (a) MinHash ---------------------------------------------------------------------------------


def ours(texts: pl.Series, config: minhash.MinhashDedupConfig) -> dict:
    """Our MinHash-LSH on normalised texts: signatures, band keys, candidate pairs, estimate check, clusters."""
    bands, rows = config.lsh_params()
    c0, t0 = time.process_time(), time.perf_counter()
    keys, counts = minhash.shingles(texts, config.ngram)
    t1 = time.perf_counter()
    sig = minhash.MinHasher(config.num_perm, config.seed).signatures(keys, counts)
    t2 = time.perf_counter()
    band = minhash.band_keys(sig, bands, rows)
    src, dst = minhash.candidate_pairs(band)
    t3 = time.perf_counter()
    keep = minhash.estimated_jaccard(sig, src, dst) >= config.threshold
    labels = clusters.connected_components(texts.len(), src[keep], dst[keep])
    t4, c4 = time.perf_counter(), time.process_time()
    return {
        "shingle_s": t1 - t0, "signature_s": t2 - t1, "lsh_s": t3 - t2, "cluster_s": t4 - t3, "total_s": t4 - t0,
        "cpu_s": c4 - c0,
        "keys": keys, "counts": counts, "band": band, "labels": labels, "candidates": src.size,
    }  # fmt: skip


def datasketch_run(keys: np.ndarray, counts: np.ndarray, config: minhash.MinhashDedupConfig) -> dict:
    """datasketch on the same shingles (as 4-byte strings): MinHash.bulk, MinHashLSH insert + query,
    the same estimate check and union-find."""
    from datasketch import MinHash, MinHashLSH

    bands, rows = config.lsh_params()
    t0 = time.perf_counter()
    raw = keys.astype("<u4").tobytes()
    bounds = np.r_[0, np.cumsum(counts)] * 4
    docs = [[raw[j : j + 4] for j in range(bounds[i], bounds[i + 1], 4)] for i in range(counts.size)]
    c1, t1 = time.process_time(), time.perf_counter()
    hashes = MinHash.bulk(docs, num_perm=config.num_perm)
    t2 = time.perf_counter()
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm, params=(bands, rows))
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m)
    found = [lsh.query(m) for m in hashes]
    t3 = time.perf_counter()
    pairs = [(i, j) for i, c in enumerate(found) for j in c if j > i]
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    keep = np.array([hashes[i].jaccard(hashes[j]) >= config.threshold for i, j in pairs], dtype=bool)
    labels = clusters.connected_components(counts.size, src[keep], dst[keep])
    t4, c4 = time.perf_counter(), time.process_time()
    return {
        "prep_s": t1 - t0, "minhash_s": t2 - t1, "lsh_s": t3 - t2, "cluster_s": t4 - t3, "total_s": t4 - t1,
        "cpu_s": c4 - c1,
        "candidates": {frozenset(p) for p in pairs}, "labels": labels, "n_candidates": len(pairs),
    }  # fmt: skip


def exact_pairs(
    keys: np.ndarray, counts: np.ndarray, sample: np.ndarray, threshold: float, cap: int
) -> pl.DataFrame:
    """All (a, b) with a in `sample` and exact Jaccard >= threshold, via an inverted index of shingles.
    Shingles held by more than `cap` rows are skipped as join keys (a pair at Jaccard >= 0.8 shares
    mostly rarer shingles too)."""
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    postings = pl.DataFrame({"doc": owner, "key": keys.astype(np.int64)}).unique()
    sizes = postings.group_by("doc").len().rename({"len": "size"})
    common = postings.group_by("key").len().filter(pl.col("len") <= cap).select("key")
    postings_rare = postings.join(common, on="key")
    left = postings.filter(pl.col("doc").is_in(pl.Series(sample).implode())).join(common, on="key")
    shared = (
        left.join(postings_rare, on="key", suffix="_b")
        .filter(pl.col("doc") != pl.col("doc_b"))
        .group_by("doc", "doc_b")
        .len()
    )
    # exact intersection (including common shingles) for the candidate pairs
    cand = shared.select("doc", "doc_b")
    inter = (
        cand.join(postings, on="doc").join(postings, left_on=["doc_b", "key"], right_on=["doc", "key"], how="semi")
        .group_by("doc", "doc_b").len().rename({"len": "inter"})
    )  # fmt: skip
    return (
        inter.join(sizes, on="doc")
        .join(sizes.rename({"doc": "doc_b", "size": "size_b"}), on="doc_b")
        .with_columns(j=pl.col("inter") / (pl.col("size") + pl.col("size_b") - pl.col("inter")))
        .filter(pl.col("j") >= threshold)
    )


def seed_recalls(
    keys: np.ndarray,
    counts: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    config: minhash.MinhashDedupConfig,
    seeds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """LSH candidate recall of the exact pairs (a, b) for `seeds` hash seeds, ours and datasketch's:
    a pair is a candidate when one band of its signatures is equal (MinHashLSH's own rule: band i is
    hashvalues[i*rows:(i+1)*rows]). Signatures of the rows in the pairs only (a row's signature does
    not depend on the others), so this costs little; one seed's recall is noisy (pairs come in
    correlated clusters), the mean over seeds is what an implementation gives."""
    from datasketch import MinHash

    bands, rows = config.lsh_params()
    ids = np.unique(np.r_[a, b])
    ia, ib = np.searchsorted(ids, a), np.searchsorted(ids, b)
    bounds = np.r_[0, np.cumsum(counts)]
    sub_keys = np.concatenate([keys[bounds[i] : bounds[i + 1]] for i in ids])
    sub_counts = counts[ids]
    raw = sub_keys.astype("<u4").tobytes()
    sub_bounds = np.r_[0, np.cumsum(sub_counts)] * 4
    docs = [[raw[j : j + 4] for j in range(sub_bounds[i], sub_bounds[i + 1], 4)] for i in range(ids.size)]
    ours_r, ds_r = [], []
    for seed in range(1, seeds + 1):
        sig = minhash.MinHasher(config.num_perm, seed).signatures(sub_keys, sub_counts)
        band = minhash.band_keys(sig, bands, rows, seed)
        ours_r.append((band[ia] == band[ib]).any(axis=1).mean())
        values = np.stack([m.hashvalues for m in MinHash.bulk(docs, num_perm=config.num_perm, seed=seed)])
        same = (values[ia, : bands * rows] == values[ib, : bands * rows]).reshape(-1, bands, rows)
        ds_r.append(same.all(axis=2).any(axis=1).mean())
    return np.array(ours_r), np.array(ds_r)


def part_a(texts_raw: list[str], args: argparse.Namespace, work: Path) -> None:
    # the setup of the documented comparison (threshold 0.8, datasketch's band weighting), not the defaults
    config = minhash.MinhashDedupConfig(threshold=0.8, false_positive_weight=0.5)
    bands, rows = config.lsh_params()
    print(f"\n(a) MinHash-LSH: {len(texts_raw):,} rows, num_perm {config.num_perm}, threshold {config.threshold}, "
          f"bands x rows {bands} x {rows} (datasketch picks {_ds_params(config)}), word {config.ngram}-grams")  # fmt: skip
    t = time.perf_counter()
    texts = pl.DataFrame({"p": texts_raw}).select(math_text(pl.col("p"))).to_series()
    normalise_s = time.perf_counter() - t
    mine = ours(texts, config)
    print(f"  normalise (math_text, shared by both): {normalise_s:.2f}s")
    print(f"  ours:       {mine['total_s']:.2f}s wall, {mine['cpu_s']:.2f}s CPU  (shingles {mine['shingle_s']:.2f}, signatures {mine['signature_s']:.2f}, "
          f"LSH {mine['lsh_s']:.2f}, check+clusters {mine['cluster_s']:.2f}); {mine['candidates']:,} candidate pairs; "
          f"peak RSS so far {peak_rss_mb():.0f} MB")  # fmt: skip

    n_ds = min(args.datasketch_rows or len(texts_raw), len(texts_raw))
    keys, counts = mine["keys"], mine["counts"]
    if n_ds < len(texts_raw):
        sub = ours(texts[:n_ds], config)
        print(f"  ours on the first {n_ds:,} rows: {sub['total_s']:.2f}s")
    else:
        sub = mine
    ds = datasketch_run(keys[: counts[:n_ds].sum()], counts[:n_ds], config)
    print(f"  datasketch on {n_ds:,} rows: {ds['total_s']:.2f}s wall, {ds['cpu_s']:.2f}s CPU  (MinHash.bulk {ds['minhash_s']:.2f}, LSH insert+query "
          f"{ds['lsh_s']:.2f}, check+clusters {ds['cluster_s']:.2f}; not counted: building its byte-string shingle "
          f"lists {ds['prep_s']:.2f}s); {ds['n_candidates']:,} candidate pairs")  # fmt: skip
    print(f"  speed-up on the same {n_ds:,} rows: {ds['total_s'] / sub['total_s']:.1f}x wall, "
          f"{ds['cpu_s'] / sub['cpu_s']:.1f}x CPU (including our shingling, excluding theirs); "
          f"wall with normalisation added to both: "
          f"{(ds['total_s'] + normalise_s * n_ds / len(texts_raw)) / (sub['total_s'] + normalise_s * n_ds / len(texts_raw)):.1f}x")  # fmt: skip
    try:
        import rensa

        offsets = np.r_[0, np.cumsum(counts)].astype(np.uint64)
        t = time.perf_counter()
        rensa.RMinHash.digest_matrix_from_flat_token_hashes(keys, offsets, num_perm=config.num_perm, seed=1)
        print(
            f"  (context) rensa signatures alone on all {len(texts_raw):,} rows: {time.perf_counter() - t:.2f}s vs ours {mine['signature_s']:.2f}s"
        )
    except Exception as exc:  # optional
        print(f"  (context) rensa not measured: {exc}")

    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(n_ds, size=min(args.sample, n_ds), replace=False))
    t = time.perf_counter()
    truth = exact_pairs(keys[: counts[:n_ds].sum()], counts[:n_ds], sample, config.threshold, cap=2000)
    a, b = truth["doc"].to_numpy(), truth["doc_b"].to_numpy()
    found_ours = (sub["band"][a] == sub["band"][b]).any(axis=1)
    found_ds = np.array([frozenset((int(x), int(y))) in ds["candidates"] for x, y in zip(a, b, strict=True)])
    same_ours = sub["labels"][a] == sub["labels"][b]
    same_ds = ds["labels"][a] == ds["labels"][b]
    print(
        f"  exact Jaccard on {sample.size:,} sampled rows: {a.size:,} pairs >= {config.threshold} ({time.perf_counter() - t:.1f}s)"
    )
    expected = minhash.candidate_probability(truth["j"].to_numpy(), bands, rows).mean()
    print(f"  LSH candidate recall: ours {found_ours.mean():.4f}, datasketch {found_ds.mean():.4f} "
          f"(the S-curve 1-(1-J^{rows})^{bands} predicts {expected:.4f} for these pairs)")  # fmt: skip
    print(
        f"  same cluster after the estimate check: ours {same_ours.mean():.4f}, datasketch {same_ds.mean():.4f}"
    )
    ours_r, ds_r = seed_recalls(keys, counts, a, b, config, args.seeds)
    print(f"  LSH candidate recall over seeds 1..{args.seeds} (same pairs): ours {ours_r.mean():.4f} ± {ours_r.std():.4f} "
          f"(min {ours_r.min():.4f}, max {ours_r.max():.4f}), datasketch {ds_r.mean():.4f} ± {ds_r.std():.4f} "
          f"(min {ds_r.min():.4f}, max {ds_r.max():.4f}); difference {ours_r.mean() - ds_r.mean():+.4f}")  # fmt: skip

    # the full stage (Parquet in, kept/dropped shards and report out) in a fresh child process, so its
    # peak RSS is its own and not datasketch's or the ground truth's
    src = work / "problems.jsonl"
    src.write_text("".join(json.dumps({"problem": t}) + "\n" for t in texts_raw))
    run_stage("collect", None, file_sources([src], FieldMap()), work / "00-collect")
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for check in ("estimate", "exact"):
            seconds, rep, rss = pool.apply(stage_in_child, (work, check))
            print(f"  minhash_dedup stage (check={check}) on {rep['rows_in']:,} rows: {seconds:.2f}s, "
                  f"removed {rep['rows_dropped']:,}; peak RSS of the stage process {rss:.0f} MB")  # fmt: skip


def stage_in_child(work: Path, check: str) -> tuple[float, dict, float]:
    t = time.perf_counter()
    config = minhash.MinhashDedupConfig(check=check)
    rep = run_stage("minhash_dedup", work / "00-collect" / "kept", config, work / f"mh-{check}").model_dump()
    return time.perf_counter() - t, {k: rep[k] for k in ("rows_in", "rows_dropped")}, own_peak_rss_mb()


def own_peak_rss_mb() -> float:
    """VmHWM of this process: unlike ru_maxrss, Linux does not carry it over from the parent across exec."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _ds_params(config: minhash.MinhashDedupConfig) -> tuple[int, int]:
    from datasketch.lsh import _optimal_param

    return _optimal_param(config.threshold, config.num_perm, 0.5, 0.5)


# --- (b) embeddings --------------------------------------------------------------------------------


def part_b(texts_raw: list[str], args: argparse.Namespace, work: Path) -> None:
    texts = (
        pl.DataFrame({"p": texts_raw[: args.embed_texts]})
        .select(math_text(pl.col("p")))
        .to_series()
        .to_list()
    )
    model = embed.load_model(embed.model_location(embed.DEFAULT_MODEL), "cpu")
    model.encode(texts[:64], batch_size=64)  # warm-up: neither side pays the model load
    print(f"\n(b) embeddings: {len(texts):,} texts, all-MiniLM-L6-v2 on CPU, batch 64")
    # alternate the two, fresh cache each time, and compare the best of each: the machine is shared
    direct_runs, ours_runs = [], []
    for round_ in range(args.rounds):
        t = time.perf_counter()
        model.encode(texts, batch_size=64, normalize_embeddings=True)
        direct_runs.append(time.perf_counter() - t)
        embedder = embed.Embedder(cache_dir=work / f"cache{round_}", batch_size=64, device="cpu")
        t = time.perf_counter()
        vectors = embedder.encode(texts, progress=False)
        ours_runs.append(time.perf_counter() - t)
    direct, ours_s = min(direct_runs), min(ours_runs)
    print(
        f"  runs (s): direct {[round(x, 2) for x in direct_runs]}, Embedder {[round(x, 2) for x in ours_runs]}"
    )
    t = time.perf_counter()
    embed.Embedder(cache_dir=work / "cache0").encode(texts, progress=False)
    cached = time.perf_counter() - t
    print(f"  SentenceTransformer.encode (best): {direct:.2f}s = {len(texts) / direct:.0f} texts/s")
    print(f"  Embedder.encode (best; cold cache, writes it): {ours_s:.2f}s = {len(texts) / ours_s:.0f} texts/s -> "
          f"{direct / ours_s:.2f}x of direct")  # fmt: skip
    print(f"  Embedder.encode again (from the cache, model not run): {cached:.3f}s")
    t = time.perf_counter()
    embed.knn(vectors, vectors, 11)
    print(f"  faiss exact self-search of these {len(texts):,} vectors, k=11: {time.perf_counter() - t:.3f}s")
    rng = np.random.default_rng(0)
    # embedding-like vectors: low intrinsic dimension (32) spread over the model's dimension, plus noise
    mix = rng.normal(size=(32, vectors.shape[1]))
    base = rng.normal(size=(args.faiss_rows, 32)) @ mix + 0.3 * rng.normal(
        size=(args.faiss_rows, vectors.shape[1])
    )
    base = base.astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    t = time.perf_counter()
    _, flat_ids = embed.knn(base, base[:10_000], 10)
    flat_s = time.perf_counter() - t
    t = time.perf_counter()
    _, hnsw_ids = embed.knn(base, base[:10_000], 10, exact_limit=1)
    hnsw_s = time.perf_counter() - t
    recall = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(flat_ids, hnsw_ids, strict=True)])
    print(f"  faiss on {args.faiss_rows:,} x {vectors.shape[1]} vectors, 10,000 queries, k=10: flat {flat_s:.2f}s; "
          f"HNSW build+search {hnsw_s:.2f}s, recall@10 vs flat {recall:.3f} (synthetic vectors of intrinsic dimension 32)")  # fmt: skip
    print(f"  peak RSS {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--datasketch-rows", type=int, default=0, help="datasketch on the first N rows only (0 = all)"
    )
    parser.add_argument(
        "--sample", type=int, default=2000, help="rows whose exact-Jaccard neighbours give the recall"
    )
    parser.add_argument("--seeds", type=int, default=10, help="hash seeds for the mean recall of both")
    parser.add_argument("--embed-texts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds for (b)")
    parser.add_argument("--faiss-rows", type=int, default=50_000)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--skip", choices=["a", "b"], default=None)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    t = time.perf_counter()
    texts = generate(args.data_dir, args.rows)
    print(
        f"generated {len(texts):,} problems in {time.perf_counter() - t:.1f}s; peak RSS {peak_rss_mb():.0f} MB"
    )
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        if args.skip != "a":
            part_a(texts, args, Path(tmp))
        if args.skip != "b":
            part_b(texts, args, Path(tmp))


if __name__ == "__main__":
    main()
