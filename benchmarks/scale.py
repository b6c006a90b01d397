"""A whole no-teacher run at 100k and 1M problems, through `longcot run` as a user runs it, on the
local engine and on the Ray engine (a local Ray of 2 CPUs).

    .venv/bin/python benchmarks/scale.py [--sizes 100000 1000000] [--engines local ray] [--workers 2]

The corpus (JSONL, in --files sources per size, in a temp dir) is real problems from
../shared/data/sources with numbers re-drawn, ~25% near-duplicates made by small edits of earlier rows (benchmarks/dedup.py's
generator), 5% exact copies, and 0.2% benchmark problems from ../shared/data/benchmarks (half verbatim,
half re-formatted). The recipe is collect (JSONL) → exact_dedup → minhash_dedup → decontaminate (all
registered benchmarks) → export. Each run is a fresh `longcot run` process with its own run directory
(one PREFECT_HOME for all, warmed by an untimed 100-row run, as a user's stays). Its peak RSS is the
largest sum of RSS over the process and all its descendants (Ray's raylet, GCS and workers included),
polled every 0.2 s: an upper bound, since pages shared between processes (Ray's object store, imported
libraries) count once per process. The 1-minute load average at the start of each run and its mean and
maximum while the run went are printed: on a shared machine, other jobs' load stretches every wall
time. Rows/s per stage are the stage's input rows over its seconds in the run's manifest.

Targets (issue 13): 1M no-teacher run < 10 min and peak RSS < 3 GB on the local engine; peak RSS at 1M
within 1.5x of 100k; Ray on 2 local CPUs no slower than 1.3x the local engine at 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml
from dedup import base_problems, machine, near_edit, redraw_numbers  # benchmarks/dedup.py's generator

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
STAGES = ["exact_dedup", "minhash_dedup", "decontaminate", "export"]
EXACT_SHARE, NEAR_SHARE, BENCH_SHARE = 0.05, 0.25, 0.002


def benchmark_problems(data_dir: Path) -> list[str]:
    texts = []
    for path in sorted((data_dir / "benchmarks").glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                text = record.get("problem") or record.get("question")
                if isinstance(text, str) and text.strip():
                    texts.append(text)
    return texts


def write_corpus(data_dir: Path, rows: int, paths: list[Path], seed: int = 0) -> dict[str, int]:
    """`rows` JSONL problems ({"problem", "answer"}, the deepscaler_train_math layout) split over
    `paths` in order (copies cross files, as they cross sources); returns how many of each kind."""
    rng = random.Random(seed)
    bases, bench = base_problems(data_dir), benchmark_problems(data_dir)
    out: list[str] = []
    kinds = {"fresh": 0, "exact": 0, "near": 0, "benchmark": 0}
    while len(out) < rows:
        draw = rng.random()
        if out and draw < EXACT_SHARE:
            out.append(out[rng.randrange(len(out))])
            kinds["exact"] += 1
        elif out and draw < EXACT_SHARE + NEAR_SHARE:
            out.append(near_edit(out[rng.randrange(len(out))], rng))
            kinds["near"] += 1
        elif draw < EXACT_SHARE + NEAR_SHARE + BENCH_SHARE:
            text = rng.choice(bench)
            out.append(text if rng.random() < 0.5 else re.sub(r"\s+", " ", text.replace("$", "")) + " ")
            kinds["benchmark"] += 1
        else:
            out.append(redraw_numbers(rng.choice(bases), rng))
            kinds["fresh"] += 1
    per_file = -(-rows // len(paths))
    for n, path in enumerate(paths):
        with path.open("w", encoding="utf-8") as f:
            for i in range(n * per_file, min(rows, (n + 1) * per_file)):
                f.write(json.dumps({"problem": out[i], "answer": str(i % 97)}) + "\n")
    return kinds


def write_recipe(corpus: list[Path], data_dir: Path, path: Path) -> None:
    recipe = {
        "name": "scale",
        "sources": [{"name": p.stem, "path": str(p), "preset": "deepscaler_train_math"} for p in corpus],
        "stages": [
            {"stage": "exact_dedup"},
            {"stage": "minhash_dedup"},
            {"stage": "decontaminate", "benchmark_dir": str(data_dir / "benchmarks")},
            {"stage": "export"},
        ],
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))


def longcot_command() -> list[str]:
    script = Path(sys.executable).parent / "longcot"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "flows.cli"]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a process that ended between the listing and the read
            continue
    return total


def timed_run(recipe: Path, run_dir: Path, engine: str, workers: int, extra: tuple[str, ...] = ()) -> dict:
    """One `longcot run` process: wall seconds, peak RSS of its process tree, the manifest. The run
    directory is removed first: a re-run in the same --work would reuse every cached stage."""
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "PREFECT_HOME": str(run_dir.parent / "prefect")}  # one, as a user's stays
    command = [*longcot_command(), "run", str(recipe), "--run-dir", str(run_dir)]
    command += ["--engine", engine, "--workers", str(workers), *extra]
    loads = [os.getloadavg()[0]]  # the 1-minute load average: at the start, then every 5 s
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched = psutil.Process(proc.pid)
    timeline: list[tuple[float, int]] = []  # (epoch seconds, RSS of the tree)
    while proc.poll() is None:
        timeline.append((time.time(), tree_rss(watched)))
        if len(timeline) % 25 == 0:
            loads.append(os.getloadavg()[0])
        time.sleep(0.2)
    peak = max((rss for _, rss in timeline), default=0)
    wall = time.perf_counter() - started
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"longcot run failed ({engine}):\n{output}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for stage in manifest["stages"]:  # the tree's peak while the stage ran (it ends at its report)
        end = (run_dir / stage["dir"] / "report.json").stat().st_mtime
        during = [rss for t, rss in timeline if end - stage["seconds"] - 0.2 <= t <= end + 0.2]
        stage["peak_gb"] = max(during, default=0) / 2**30
    loads.append(os.getloadavg()[0])
    load = (loads[0], sum(loads) / len(loads), max(loads))
    return {"wall": wall, "peak_gb": peak / 2**30, "stages": manifest["stages"], "load": load}


def machine_line() -> str:
    return f"{machine()}; load average {os.getloadavg()[0]:.1f} at start"


def print_run(size: int, engine: str, result: dict) -> None:
    print(
        f"\n{size:,} rows, {engine} engine: wall {result['wall']:.1f} s, peak RSS {result['peak_gb']:.2f} GB, "
        f"{size / result['wall']:,.0f} rows/s end to end (load average {result['load'][0]:.1f} at the start, "
        f"mean {result['load'][1]:.1f}, max {result['load'][2]:.1f} during the run)"
    )
    print(f"  {'stage':<18} {'in':>10} {'kept':>10} {'seconds':>8} {'rows/s':>10} {'peak GB':>8} workers")
    for s in result["stages"]:
        rate = s["rows_in"] / s["seconds"] if s["seconds"] else float("inf")
        print(
            f"  {s['dir']:<18} {s['rows_in']:>10,} {s['rows_kept']:>10,} {s['seconds']:>8.1f} "
            f"{rate:>10,.0f} {s['peak_gb']:>8.2f} {s['workers']}"
        )
    overhead = result["wall"] - sum(s["seconds"] for s in result["stages"])
    print(f"  outside the stages (start-up, Prefect, engine start): {overhead:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=4, help="JSONL files (sources) per corpus")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=None, help="keep the corpora and runs here")
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    work = args.work or Path(tempfile.mkdtemp(prefix="longcot-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[int, str], dict] = {}
    for size in args.sizes:
        corpus = [work / f"corpus-{size}-{n:02d}.jsonl" for n in range(args.files)]
        recipe = work / f"recipe-{size}.yaml"
        if not all(p.is_file() for p in corpus):
            started = time.perf_counter()
            kinds = write_corpus(args.data_dir, size, corpus)
            print(
                f"\ncorpus of {size:,} in {args.files} files: {kinds} ({time.perf_counter() - started:.0f} s)"
            )
        write_recipe(corpus, args.data_dir, recipe)
        if not (work / "prefect").is_dir():  # Prefect's first start migrates its database: not timed
            timed_run(recipe, work / "warm-up", "local", args.workers, ("--limit", "100"))
        for engine in args.engines:
            results[size, engine] = timed_run(recipe, work / f"run-{size}-{engine}", engine, args.workers)
            print_run(size, engine, results[size, engine])
    print("\nsummary")
    for (size, engine), r in results.items():
        print(
            f"  {size:>9,} {engine:<5} wall {r['wall']:7.1f} s  peak RSS {r['peak_gb']:5.2f} GB  "
            f"load average mean {r['load'][1]:.1f} (max {r['load'][2]:.1f})"
        )
    sizes = sorted(args.sizes)
    for engine in args.engines:
        if len(sizes) > 1 and (sizes[0], engine) in results and (sizes[-1], engine) in results:
            ratio = results[sizes[-1], engine]["peak_gb"] / results[sizes[0], engine]["peak_gb"]
            print(f"  {engine}: peak RSS at {sizes[-1]:,} / at {sizes[0]:,} = {ratio:.2f}x (target <= 1.5x)")
    for size in sizes:
        if (size, "local") in results and (size, "ray") in results:
            ratio = results[size, "ray"]["wall"] / results[size, "local"]["wall"]
            print(f"  {size:,}: Ray wall / local wall = {ratio:.2f}x (target <= 1.3x at 100,000)")
    big = max(sizes)
    if (big, "local") in results:
        r = results[big, "local"]
        print(
            f"  {big:,} local: {r['wall'] / 60:.1f} min (target < 10), peak {r['peak_gb']:.2f} GB (target < 3)"
        )
    print(f"\nruns and corpora in {work}")


if __name__ == "__main__":
    main()
