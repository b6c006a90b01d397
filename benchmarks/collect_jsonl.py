"""Collection of a generated JSONL corpus: the vectorised reader against Parquet and the per-record reader.

Target (issue 13): >= 200,000 rows/s on 2 cores from JSONL as from Parquet, memory flat in N. The
rows are those of benchmarks/collect_dedup.py (real problems from ../shared/data/sources, numbered,
30% case/spacing variants), written once as Parquet and once as JSONL. Every run is its own process
(wall, peak RSS and CPU from that process's rusage), in the same session on the same rows:

    collect   collection alone: `stages.registry.run_stage('collect', ...)` (what `longcot dedup`/`decontaminate`
              run first, and the collect task of `longcot run` without Prefect around it)
    dedup     the user command `longcot dedup FILE --out D --method exact` (collect + exact dedup);
              collection's rows/s is its collect stage's `seconds` in D/00-collect/report.json

each for three readers:

    jsonl             this checkout, JSONL
    parquet           this checkout, the same rows as Parquet
    jsonl-per-record  the code at --baseline-ref (before the vectorised reader), JSONL

    python benchmarks/collect_jsonl.py [--rows 200000 1000000] [--baseline-ref 8f200ad]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect_dedup import generate

REPO = Path(__file__).resolve().parents[1]
TARGET_ROWS_PER_S = 200_000
BASELINE_REF = "8f200ad"  # main before the vectorised JSONL reader


def baseline_tree(ref: str, into: Path) -> Path:
    """The code at `ref`, extracted with `git archive`, to run as its users ran it."""
    tar = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into


COLLECT = (
    "import sys; from pathlib import Path; from stages.registry import run_stage; "
    "from stages.collect import FieldMap, file_sources; "
    "run_stage('collect', None, file_sources([Path(sys.argv[1])], FieldMap()), Path(sys.argv[2]))"
)
# the same call in the API of BASELINE_REF (before the stage runner)
BASELINE_COLLECT = (
    "import sys; from pathlib import Path; from flows.steps import collect_files; "
    "from stages.collect import FieldMap; collect_files([Path(sys.argv[1])], FieldMap(), Path(sys.argv[2]))"
)
READERS = ("jsonl", "parquet", "jsonl-per-record")


def command(kind: str, corpus: Path, out: Path, baseline: bool) -> list[str]:
    if kind == "collect":
        code = BASELINE_COLLECT if baseline else COLLECT
        return [sys.executable, "-c", code, str(corpus), str(out / "00-collect")]
    longcot = Path(sys.executable).with_name("longcot")
    return [str(longcot), "dedup", str(corpus), "--out", str(out), "--method", "exact"]


def timed_run(kind: str, code: Path, corpus: Path, out: Path) -> dict[str, float]:
    """One process with `code` first on the path, measured by its own rusage."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(  # cwd: not this checkout, whose packages `python -c` would import first
            command(kind, corpus, out, baseline=code != REPO),
            env=env,
            cwd=out.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            log.seek(0)
            raise RuntimeError(
                f"{kind} {corpus.name} with {code}: exit {status}\n{log.read().decode()[-3000:]}"
            )
    collect = json.loads((out / "00-collect" / "report.json").read_text())
    return {
        "rows": collect["rows_in"],
        "collect_s": collect["seconds"],
        "wall_s": wall,
        "rss_gb": usage.ru_maxrss / 1024 / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def write_corpus(data_dir: Path, rows: int, files: dict[str, Path]) -> None:
    generate(data_dir, rows, files["parquet"])
    pl.scan_parquet(files["parquet"]).sink_ndjson(files["jsonl"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("LONGCOT_DATA_DIR", REPO.parent / "shared/data"))
    )
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref of the per-record reader")
    args = parser.parse_args()
    results: dict[tuple[int, str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="longcot-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        baseline = baseline_tree(args.baseline_ref, work / "baseline")
        for rows in args.rows:
            files = {"parquet": work / f"rows{rows}.parquet", "jsonl": work / f"rows{rows}.jsonl"}
            # in a child: a process started later would inherit this one's peak RSS as its own floor
            maker = mp.get_context("spawn").Process(target=write_corpus, args=(args.data_dir, rows, files))
            maker.start()
            maker.join()
            sizes = ", ".join(f"{f.stat().st_size / 1e6:,.0f} MB {k}" for k, f in files.items())
            print(f"{rows:,} rows: {sizes}")
            for kind in ("collect", "dedup"):
                for reader in READERS:
                    code = baseline if reader == "jsonl-per-record" else REPO
                    corpus = files["parquet" if reader == "parquet" else "jsonl"]
                    out = work / f"out-{rows}-{kind}-{reader}"
                    result = timed_run(kind, code, corpus, out)
                    assert result["rows"] == rows, f"{reader}: {result['rows']} rows collected of {rows}"
                    results[rows, kind, reader] = result
                    print(
                        f"  {kind:7s} {reader:17s} collect stage {result['collect_s']:6.2f}s "
                        f"{rows / result['collect_s']:>9,.0f} rows/s | process wall {result['wall_s']:6.2f}s "
                        f"CPU {result['cpu_s']:6.2f}s peak RSS {result['rss_gb']:.2f} GB",
                        flush=True,
                    )
                    shutil.rmtree(out)
            for f in files.values():
                f.unlink()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average now {os.getloadavg()[0]:.1f}"
    )
    for rows in args.rows:
        new, pq, old = (results[rows, "collect", r] for r in READERS)
        rate = rows / new["wall_s"]
        print(
            f"{rows:,} rows, collection as a process: JSONL {rate:,.0f} rows/s ({rate / TARGET_ROWS_PER_S:.2f}x "
            f"the {TARGET_ROWS_PER_S:,} target; {rows / new['cpu_s']:,.0f} rows per CPU-s), "
            f"{pq['wall_s'] / new['wall_s']:.2f}x the Parquet path's speed, "
            f"{old['wall_s'] / new['wall_s']:.2f}x the per-record path's (CPU {old['cpu_s'] / new['cpu_s']:.2f}x)"
        )
        new, pq, old = (results[rows, "dedup", r] for r in READERS)
        print(
            f"{rows:,} rows, `longcot dedup --method exact`: collect stage {rows / new['collect_s']:,.0f} rows/s, "
            f"{pq['collect_s'] / new['collect_s']:.2f}x Parquet's, {old['collect_s'] / new['collect_s']:.2f}x "
            f"per-record's; the whole command {old['wall_s'] / new['wall_s']:.2f}x faster than per-record"
        )
    if len(args.rows) > 1:
        small, large = min(args.rows), max(args.rows)
        for reader in READERS:
            ratio = results[large, "collect", reader]["rss_gb"] / results[small, "collect", reader]["rss_gb"]
            print(f"collection peak RSS, {reader}: {large:,} rows / {small:,} rows = {ratio:.2f}x")


if __name__ == "__main__":
    main()
