"""Near-dup benchmark, all on the same generated data in one run.

(a) MinHash end to end, as users run each tool, on one generated JSONL file (default 200,000 rows:
    real problems from ../shared/data/sources with numbers re-drawn, plus ~25% near-duplicate copies
    made by controlled edits, so the ground truth is known). Each is a process of its own, timed for
    wall time and the peak RSS of its process tree, back to back in the same run:
      longcot:    `longcot dedup CORPUS.jsonl --out D --method minhash --threshold 0.8` (the whole
                  command: collection, the stage, reports, dedup.html);
      datasketch: its users' code (benchmarks/dedup_baselines.py): json per line, word 5-grams,
                  MinHash.generator, MinHashLSH, query then insert;
      rensa:      as its README shows: RMinHash per row over the same word 5-grams, RMinHashLSH
                  (16 bands), query then insert.
    All three at threshold 0.8, 128 permutations, word 5-grams (not longcot's defaults, 0.55 with the
    pair check: the peers have no pair check, so the comparison pins their setting). Recall: share of
    (copy, original) pairs in one predicted cluster; precision: share of predicted (removed, kept)
    pairs that are one problem.
(b) Embedding throughput of stages.embed.Embedder (cold cache) against SentenceTransformer.encode
    on the same texts, the cached re-run, and faiss search times.

    .venv/bin/python benchmarks/dedup.py [--rows 200000] [--skip b] [--embed-texts 1000]
        [--tools longcot,rensa] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import polars as pl
import psutil
from dedup_baselines import NGRAM, NUM_PERM, THRESHOLD  # the comparison's setting, shared

from stages import embed
from stages.dedup import clusters
from stages.text import math_text

BASELINE_SCRIPT = Path(__file__).with_name("dedup_baselines.py")
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
        f"numpy {np.__version__}, polars {pl.__version__}, datasketch {datasketch.__version__}, rensa {version('rensa')}, faiss {faiss.__version__}, "
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


def generate(data_dir: Path, rows: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """`rows` problems and, per row, the row it was copied from (itself for an original): ~25% are
    near-duplicate copies (one controlled edit) of an earlier row, copies of copies included."""
    rng = random.Random(seed)
    bases = base_problems(data_dir)
    out: list[str] = []
    parent: list[int] = []
    while len(out) < rows:
        if out and rng.random() < 0.25:
            i = rng.randrange(len(out))
            out.append(near_edit(out[i], rng))
            parent.append(i)
        else:
            out.append(redraw_numbers(rng.choice(bases), rng))
            parent.append(len(out) - 1)
    return out, np.asarray(parent, dtype=np.int64)


# --- (a) MinHash, end to end ------------------------------------------------------------------------


def families(texts: list[str], parent: np.ndarray) -> np.ndarray:
    """Ground truth: rows with the same family are the same problem (one row's copies, and originals
    whose generated texts are identical)."""
    root = parent.copy()
    while not np.array_equal(root[root], root):
        root = root[root]
    return pl.Series([texts[r] for r in root.tolist()]).hash(1).to_numpy()


def score(pairs: np.ndarray, parent: np.ndarray, family: np.ndarray) -> tuple[float, float, int]:
    """(recall, precision, pairs): recall is the share of (copy, original) pairs that end up in one
    cluster of the predicted (duplicate, kept row) pairs; precision the share of predicted pairs whose
    rows are of one family."""
    labels = clusters.connected_components(parent.size, pairs[:, 0], pairs[:, 1])
    copies = np.flatnonzero(parent != np.arange(parent.size))
    recall = float((labels[copies] == labels[parent[copies]]).mean())
    precision = float((family[pairs[:, 0]] == family[pairs[:, 1]]).mean()) if len(pairs) else 1.0
    return recall, precision, len(pairs)


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run a command as a process: (wall seconds, peak RSS of its process tree in MB, sampled every 50 ms)."""
    t = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        proc, peak = psutil.Process(child.pid), 0
        while child.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss(proc))
            time.sleep(0.05)
    wall = time.perf_counter() - t
    if child.returncode:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({child.returncode}); see {log}:\n{log.read_text()[-2000:]}"
        )
    return wall, peak / 2**20


def longcot_pairs(out: Path) -> np.ndarray:
    """(dropped row, kept row) pairs of `longcot dedup --method minhash`, as input row numbers (the
    corpus carries each row's number as its `answer`)."""
    stage = out / "01-minhash_dedup"
    kept = pl.read_parquet(stage / "kept" / "*.parquet", columns=["uid", "answer"])
    dropped = pl.read_parquet(stage / "dropped" / "*.parquet", columns=["answer", "drop_detail"])
    keeper = kept.group_by("uid").agg(pl.col("answer").first().alias("keeper"))
    found = dropped.with_columns(
        pl.col("drop_detail").str.json_path_match("$.duplicate_of").alias("uid")
    ).join(keeper, on="uid", how="left")
    return found.select(pl.col("answer").cast(pl.Int64), pl.col("keeper").cast(pl.Int64)).to_numpy()


def part_a(texts: list[str], parent: np.ndarray, args: argparse.Namespace, work: Path) -> None:
    corpus = work / "corpus.jsonl"
    pl.DataFrame({"problem": texts, "answer": [str(i) for i in range(len(texts))]}).write_ndjson(corpus)
    family = families(texts, parent)
    print(f"\n(a) MinHash end to end on {corpus.name}: {len(texts):,} rows, {int((parent != np.arange(parent.size)).sum()):,} "
          f"near-duplicate copies; all three at threshold {THRESHOLD}, {NUM_PERM} permutations, word {NGRAM}-grams; "
          f"load average before: {os.getloadavg()[0]:.1f}")  # fmt: skip
    longcot = [
        str(Path(sys.executable).with_name("longcot")),
        "dedup",
        str(corpus),
        "--method",
        "minhash",
        "--threshold",
        str(THRESHOLD),
        "--num-perm",
        str(NUM_PERM),
        "--ngram",
        str(NGRAM),
    ]
    commands = {
        # like for like: the peers have no pair check
        "longcot": [*longcot, "--out", str(work / "longcot"), "--no-pair-check"],
        **{name: [sys.executable, str(BASELINE_SCRIPT), name, str(corpus), str(work / f"{name}.npy")]
           for name in ("rensa", "datasketch")},
        "longcot +check": [*longcot, "--out", str(work / "longcot-check")],
    }  # fmt: skip
    commands = {name: cmd for name, cmd in commands.items() if name in args.tools}
    print(f"  longcot: {' '.join(longcot[1:])} --out D [--no-pair-check] (check exact, number guard on)")
    # on a shared machine one run each is noisy: --repeat N runs the tools in N alternating rounds
    # and reports each one's median wall time (and the highest peak RSS)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, float] = dict.fromkeys(commands, 0.0)
    for _ in range(args.repeat):
        for name, cmd in commands.items():
            if name.startswith("longcot"):  # a fresh output: the stages of an earlier round are cache hits
                shutil.rmtree(cmd[cmd.index("--out") + 1], ignore_errors=True)
            wall, peak = timed(cmd, work / f"{name.replace(' +', '-')}.log")
            walls[name].append(wall)
            rss[name] = max(rss[name], peak)
    results = {name: float(np.median(times)) for name, times in walls.items()}
    for name, cmd in commands.items():
        if name.startswith("longcot"):
            pairs = longcot_pairs(Path(cmd[cmd.index("--out") + 1]))
        else:
            pairs = np.load(work / f"{name}.npy")
        recall, precision, n = score(pairs, parent, family)
        label = {"longcot": "longcot dedup", "longcot +check": "  + pair check"}.get(name, name)
        rounds = f" (median of {', '.join(f'{w:.1f}' for w in walls[name])})" if args.repeat > 1 else ""
        print(f"  {label:14s} {results[name]:7.1f}s wall{rounds}  peak RSS {rss[name]:7.0f} MB  recall {recall:.3f}  "
              f"precision {precision:.4f}  ({n:,} rows removed; load {os.getloadavg()[0]:.1f})")  # fmt: skip
    for name in [n for n in ("longcot", "longcot +check") if n in results]:
        print(f"  {name}: " + ", ".join(f"{results[peer] / results[name]:.2f}x as fast as {peer}"
                                        for peer in ("datasketch", "rensa") if peer in results))  # fmt: skip


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
        "--tools",
        type=lambda text: [t.strip() for t in text.split(",")],
        default=["longcot", "rensa", "datasketch", "longcot +check"],
        help="(a): which to run, comma-separated (default all: longcot,rensa,datasketch,longcot +check; "
        "`longcot +check` is the default product setting, with the pair check)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="(a): alternating rounds; median wall time")
    parser.add_argument("--embed-texts", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds for (b)")
    parser.add_argument("--faiss-rows", type=int, default=50_000)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--skip", choices=["a", "b"], default=None)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    t = time.perf_counter()
    texts, parent = generate(args.data_dir, args.rows)
    print(
        f"generated {len(texts):,} problems in {time.perf_counter() - t:.1f}s; peak RSS {peak_rss_mb():.0f} MB"
    )
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        if args.skip != "a":
            part_a(texts, parent, args, Path(tmp))
        if args.skip != "b":
            part_b(texts, args, Path(tmp))


if __name__ == "__main__":
    main()
