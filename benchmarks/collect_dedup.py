"""Collect + exact dedup of 1,000,000 generated rows from Parquet: rows/s and peak RSS.

Target (issue 3): >= 200,000 rows/s and peak RSS < 1.5 GB on 2 cores. The rows are real problems
from ../shared/data/sources made unique by a numbered suffix, with 30% re-emitted as case/spacing
variants, so exact dedup has real work. The timed part runs in a fresh child process so its peak
RSS is not inflated by data generation.

    python benchmarks/collect_dedup.py [--rows 1000000] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import polars as pl

TARGET_ROWS_PER_S = 200_000
TARGET_RSS_GB = 1.5


def generate(data_dir: Path, rows: int, out: Path) -> None:
    texts = pl.concat(
        [
            pl.read_ndjson(data_dir / "sources" / name, infer_schema_length=None).select(
                pl.col(column).alias("problem"), pl.col(answer).cast(pl.String).alias("answer")
            )
            for name, column, answer in [
                ("deepscaler_train_math.jsonl", "problem", "answer"),
                ("gsm8k_train.jsonl", "question", "answer"),
                ("omni_math_rule.jsonl", "problem", "answer"),
            ]
        ]
    )
    unique = int(rows * 0.7)
    base = texts.sample(unique, with_replacement=True, seed=0).with_columns(
        pl.format("{} (variant {})", pl.col("problem"), pl.int_range(unique)).alias("problem")
    )
    variants = base.sample(rows - unique, with_replacement=True, seed=1).with_columns(
        pl.col("problem").str.to_uppercase().str.replace_all(" ", "  ")
    )
    frame = pl.concat([base, variants]).sample(fraction=1.0, shuffle=True, seed=2)
    frame.with_columns(pl.lit("synthetic").alias("origin")).write_parquet(out, row_group_size=50_000)


def timed(parquet: Path, work: Path, queue: mp.Queue) -> None:
    from stages.collect import CollectConfig, SourceSpec
    from stages.dedup.exact import ExactDedupConfig
    from stages.engine import LocalEngine
    from stages.registry import run_stage

    start = time.perf_counter()
    with LocalEngine() as engine:
        config = CollectConfig(sources=[SourceSpec(name="bench", path=parquet)])
        collected = run_stage("collect", None, config, work / "01-collect", engine).model_dump()
        middle = time.perf_counter()
        kept = work / "01-collect" / "kept"
        deduped = run_stage("exact_dedup", kept, ExactDedupConfig(), work / "02-exact", engine).model_dump()
    end = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put(
        (collected, deduped, middle - start, end - middle, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("LONGCOT_DATA_DIR", "../shared/data"))
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="longcot-bench-") as tmp:
        work = Path(tmp)
        parquet = work / "problems.parquet"
        generate(args.data_dir, args.rows, parquet)
        queue: mp.Queue = mp.get_context("spawn").Queue()
        child = mp.get_context("spawn").Process(target=timed, args=(parquet, work, queue))
        child.start()
        collected, deduped, t_collect, t_dedup, peak_kb, cpu_s = queue.get()
        child.join()
    total = t_collect + t_dedup
    rate = args.rows / total
    peak_gb = peak_kb / 1024 / 1024
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"rows: {args.rows:,} -> collected {collected['rows_kept']:,} -> after exact dedup {deduped['rows_kept']:,}"
    )
    print(f"collect {t_collect:.2f}s  exact dedup {t_dedup:.2f}s  total {total:.2f}s")
    print(
        f"throughput: {rate:,.0f} rows/s  ({rate / TARGET_ROWS_PER_S:.2f}x the {TARGET_ROWS_PER_S:,} rows/s target)"
    )
    print(f"peak RSS: {peak_gb:.2f} GB  ({peak_gb / TARGET_RSS_GB:.2f}x the {TARGET_RSS_GB} GB bound)")
    # CPU seconds (all threads, including start-up imports) do not depend on what else the machine runs
    print(
        f"CPU time: {cpu_s:.2f}s  ({args.rows / cpu_s:,.0f} rows per CPU-second)  load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
