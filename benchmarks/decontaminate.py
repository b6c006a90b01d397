"""Throughput of the decontamination stage: N generated training rows vs every registered benchmark
with the n-gram method. Prints rows/s, wall time and peak RSS (target: 1M rows <= 60 s, < 2 GB, 2 cores).

    .venv/bin/python benchmarks/decontaminate.py [--rows 1000000] [--benchmark-dir ../shared/data/benchmarks]

Training rows are real problems from ../shared/data/sources with every number redrawn (so texts are
distinct, as after dedup), plus 1,000 verbatim and 1,000 reformatted benchmark problems that must be
found. Data generation runs in a child process so the peak RSS printed is the stage's alone.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
INJECTED = 1_000


def generate(rows: int, target: Path, data: Path) -> None:
    """Write `rows` problem rows as Parquet shards of 100k rows into target/kept."""
    import polars as pl

    from stages.records import PROBLEM_SCHEMA, conform
    from stages.text import uid_expr

    rng = random.Random(0)
    texts: list[str] = []
    for path in sorted((data / "sources").glob("*.jsonl")):
        for line in path.read_text().split("\n"):
            if line.strip():
                record = json.loads(line)
                text = record.get("problem") or record.get("question") or record.get("text")
                if isinstance(text, str):
                    texts.append(text[:4_000])
    bench = []
    for path in sorted((data / "benchmarks").glob("*.jsonl")):
        for line in path.read_text().split("\n"):
            if line.strip():
                record = json.loads(line)
                text = record.get("problem") or record.get("question")
                if isinstance(text, str):
                    bench.append(text)
    number = re.compile(r"\d+")
    out = [
        (number.sub(lambda m: str(rng.randrange(1, 999)), rng.choice(texts)), "synthetic")
        for _ in range(rows - 2 * INJECTED)
    ]
    picked = rng.sample(bench, INJECTED)
    out += [(p, "injected_verbatim") for p in picked]
    out += [
        (p.replace("\\frac", "\\dfrac").replace("$", "").replace("  ", " "), "injected_reformatted")
        for p in picked
    ]
    rng.shuffle(out)
    (target / "kept").mkdir(parents=True, exist_ok=True)
    for i in range(0, rows, 100_000):
        part = out[i : i + 100_000]
        frame = pl.DataFrame(
            {"problem": [t for t, _ in part], "source": [s for _, s in part], "domain": "math"}
        )
        frame = frame.with_columns(uid_expr(pl.col("problem")).alias("uid"))
        conform(frame, PROBLEM_SCHEMA).write_parquet(target / "kept" / f"part-{i // 100_000:05d}.parquet")


def measure(input_dir: Path, out_dir: Path, benchmark_dir: Path) -> None:
    import polars as pl

    from flows.steps import run_stage
    from stages.decontam import DecontamConfig, run

    config = DecontamConfig(methods=["ngram"], benchmark_dir=benchmark_dir)
    start = time.perf_counter()
    report = run_stage(run, input_dir, config, out_dir, "decontaminate")
    seconds = time.perf_counter() - start
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    details = report["details"]
    print(f"rows: {report['rows_in']:,}  flagged: {report['rows_dropped']:,}  (injected {2 * INJECTED:,})")
    print(
        f"benchmarks: {len(details['benchmarks'])}  items: {sum(b['items'] for b in details['benchmarks'].values()):,}  "
        f"indexed n-grams: {details['ngram_index']['indexed_ngrams']:,}"
    )
    print(f"phases (s): {details['seconds']}")
    from stages.store import read_shards

    found = pl.concat(read_shards(out_dir / "dropped", columns=["source"]))["source"].value_counts()
    print(
        "injected rows found:",
        {s: n for s, n in found.iter_rows() if s.startswith("injected")},
        f"of {INJECTED} each",
    )
    print(f"time: {seconds:.1f} s  rows/s: {report['rows_in'] / seconds:,.0f}  peak RSS: {rss_gb:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--benchmark-dir", type=Path, default=None)
    parser.add_argument(
        "--work", type=Path, default=None, help="keep generated data here (reused when present)"
    )
    parser.add_argument("--_generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._generate:
        generate(args.rows, args._generate, args.data)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="decontam-bench-"))
    if not (work / "input" / "kept").is_dir():
        print(f"generating {args.rows:,} rows in {work} …", flush=True)
        cmd = [
            sys.executable,
            __file__,
            "--rows",
            str(args.rows),
            "--data",
            str(args.data),
            "--_generate",
            str(work / "input"),
        ]
        subprocess.run(cmd, check=True)
    measure(work / "input" / "kept", work / "out", args.benchmark_dir or args.data / "benchmarks")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
