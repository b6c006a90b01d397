"""`longcot decontaminate` end to end against open-r1's 8-gram decontamination, on the same generated
JSONL file in one run: wall time and peak RSS of each command as a process, their ratio, and recall
and false alarms of both from the corpus's ground truth.

    .venv/bin/python benchmarks/decontaminate.py [--rows 100000] [--work /tmp/decontam-bench]
        [--benchmark-dir ../shared/data/benchmarks] [--repeat 1]

Corpus (generated once into --work, never into the repository; reused when present): real problems
of ../shared/data/sources, most with their numbers redrawn and some as near-duplicate copies (a verb
swapped, a word dropped, spacing changed), plus 1% injected benchmark items of every registered
benchmark: verbatim, reformatted (`\\frac`->`\\dfrac`, `$` dropped, `1000`->`1,000`) and wrapped in an
SFT instruction ("Solve the following problem..." + "Put your final answer in \\boxed{}."). Ground
truth sits next to the corpus (truth.parquet), not in the rows either tool reads. A source problem has
"no benchmark overlap" when it shares no 8-gram of `\\w+` words with any benchmark item; rows made from
such problems are where false alarms are counted. Rows made from the other source problems (real
leaks such as MBPP's test split inside mbpp_full, and problems sharing stock phrases) are reported
apart: flagging them is neither right nor wrong by this ground truth.

Baseline: open-r1's scripts/decontaminate.py logic (lower-case, whitespace-split word 8-grams, a
dict from n-gram to item ids per benchmark, a row is contaminated when any of its 8-grams is in a
benchmark's lookup), run against the same registered benchmarks read from the same local files, the
way a user runs it on a local JSONL: stream the file, write the clean rows and the flagged rows as
JSONL. Its one-pass form (each row's n-grams built once and probed once in a lookup merged over the
benchmarks, same decisions) is faster than the script itself, which maps the dataset once per
benchmark through `datasets` and probes every n-gram in every benchmark's lookup; the ratio printed is
therefore conservative.

Each command runs as a child process under /usr/bin/time: wall time is the child's, CPU time its user +
system time, peak RSS the larger of its max RSS and psutil polling of its process tree (every 20 ms).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
NGRAM = 8
INJECTED_SHARE = 0.01
VERBS = {"Find": "Determine", "Determine": "Find", "Compute": "Calculate", "Calculate": "Compute"}
PROMPT = "Solve the following problem. Reason step by step.\n\n{}\n\nPut your final answer in \\boxed{{}}."


# --- the corpus ------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _grams(words: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _reformat(text: str) -> str:
    text = text.replace("\\frac", "\\dfrac").replace("$", "")
    return re.sub(r"\b(\d)(\d{3})\b", r"\1,\2", text).replace("  ", " ")


def _edit(text: str, rng: random.Random) -> str:
    """A near-duplicate copy: an instruction verb swapped, a word dropped, or spacing changed."""
    choice = rng.randrange(3)
    if choice == 0:
        for old, new in VERBS.items():
            if old in text:
                return text.replace(old, new, 1)
    words = text.split(" ")
    if choice == 1 and len(words) > 8:
        del words[rng.randrange(len(words))]
        return " ".join(words)
    return text.replace(". ", ".  ").replace(", ", " , ")


def generate(rows: int, work: Path, data: Path, benchmark_dir: Path) -> None:
    """Write work/corpus.jsonl ({id, problem}) and work/truth.parquet ({id, kind, benchmark})."""
    import polars as pl

    from stages.decontam.registry import load_benchmarks

    rng = random.Random(0)
    items = load_benchmarks(benchmark_dir=benchmark_dir).items.select("benchmark", "problem").rows()
    bench_grams: set[tuple[str, ...]] = set()
    for _, problem in items:
        bench_grams |= _grams(_words(problem))
    pools: dict[str, list[str]] = {"clean": [], "overlap": []}
    for path in sorted((data / "sources").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                record = json.loads(line)
                text = record.get("problem") or record.get("question") or record.get("text")
                if isinstance(text, str) and text.strip():
                    overlaps = not _grams(_words(text)).isdisjoint(bench_grams)
                    pools["overlap" if overlaps else "clean"].append(text[:4_000])
    injected = max(300, int(rows * INJECTED_SHARE))
    number = re.compile(r"\d+")
    corpus: list[tuple[str, str, str | None]] = []
    for k in range(injected):
        benchmark, problem = rng.choice(items)
        kind = ("verbatim", "reformatted", "prompted")[k % 3]
        text = {"verbatim": problem, "reformatted": _reformat(problem), "prompted": PROMPT.format(problem)}[
            kind
        ]
        corpus.append((text, f"injected_{kind}", benchmark))
    share_clean = len(pools["clean"]) / (len(pools["clean"]) + len(pools["overlap"]))
    for _ in range(rows - injected):
        pool = "clean" if rng.random() < share_clean else "overlap"
        text = rng.choice(pools[pool])
        if rng.random() < 0.8:
            text = number.sub(lambda m: str(rng.randrange(1, 999)), text)
        if rng.random() < 0.3:
            text = _edit(text, rng)
        corpus.append((text, pool, None))
    rng.shuffle(corpus)
    work.mkdir(parents=True, exist_ok=True)
    with (work / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for i, (text, _, _) in enumerate(corpus):
            f.write(json.dumps({"id": i, "problem": text}) + "\n")
    truth = pl.DataFrame(
        {
            "id": range(len(corpus)),
            "kind": [k for _, k, _ in corpus],
            "benchmark": [b for _, _, b in corpus],
        }
    )
    truth.write_parquet(work / "truth.parquet")
    print(
        f"corpus: {len(corpus):,} rows ({injected:,} injected; source problems: {len(pools['clean']):,} "
        f"without benchmark overlap, {len(pools['overlap']):,} with)"
    )


# --- open-r1's method, as its users run it on a local file -------------------------------------------


def open_r1(corpus: Path, out: Path, benchmark_dir: Path) -> None:
    """open-r1 scripts/decontaminate.py: normalise (lower, collapse whitespace), word 8-grams as
    strings, one n-gram -> {item ids} lookup per benchmark, flag a row when any 8-gram is found."""
    from stages.decontam.registry import load_benchmarks

    def normalise(text: str) -> str:
        return " ".join(text.lower().strip().split())

    def ngrams(text: str) -> set[str]:
        words = normalise(text).split()
        return {" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}

    items = load_benchmarks(benchmark_dir=benchmark_dir).items
    # one lookup over every benchmark (n-gram -> {(benchmark, item)}): the same decisions as one lookup
    # per benchmark, one dict probe per n-gram instead of one per n-gram and benchmark
    lookup: dict[str, set[tuple[str, int]]] = collections.defaultdict(set)
    for (name,), group in items.group_by("benchmark", maintain_order=True):
        for item_id, problem in enumerate(group["problem"]):
            for gram in ngrams(problem):
                lookup[gram].add((str(name), item_id))
    out.mkdir(parents=True, exist_ok=True)
    with (
        corpus.open(encoding="utf-8") as rows,
        (out / "clean.jsonl").open("w", encoding="utf-8") as clean,
        (out / "contaminated.jsonl").open("w", encoding="utf-8") as flagged,
    ):
        for line in rows:
            row = json.loads(line)
            hit = {name for gram in ngrams(row["problem"]) if gram in lookup for name, _ in lookup[gram]}
            if hit:
                row["contaminated"] = sorted(hit)
                flagged.write(json.dumps(row) + "\n")
            else:
                clean.write(line)


# --- timing ------------------------------------------------------------------------------------------


def timed(cmd: list[str], env: dict[str, str], work: Path) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS GB, output) of a command run as a child process, under
    /usr/bin/time (CPU and max RSS of that child alone) and polled with psutil (RSS of its process tree)."""
    import psutil

    stats = work / "time.txt"
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%U %S %M", "-o", str(stats), *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    user, system, max_kb = stats.read_text().split()[-3:]
    return wall, float(user) + float(system), max(peak, int(max_kb) * 1024) / 1024**3, output


def flagged_ids(path: Path, meta: bool) -> set[int]:
    ids = set()
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ids.add(json.loads(row["meta"])["id"] if meta else row["id"])
    return ids


def quality(truth, flagged: set[int]) -> dict[str, float]:
    """Recall per injected kind and overall, false alarms on rows without benchmark overlap, and the
    flag rate of the rows made from overlapping source problems."""
    import polars as pl

    frame = truth.with_columns(pl.col("id").is_in(list(flagged)).alias("flagged"))
    rates = dict(frame.group_by("kind").agg(pl.col("flagged").mean()).iter_rows())
    injected = frame.filter(pl.col("kind").str.starts_with("injected"))
    return {
        "recall": float(injected["flagged"].mean()),
        **{k.removeprefix("injected_"): float(v) for k, v in rates.items() if k.startswith("injected")},
        "false_alarms": float(rates.get("clean", 0.0)),
        "overlap_flagged": float(rates.get("overlap", 0.0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--benchmark-dir", type=Path, default=None)
    parser.add_argument(
        "--work", type=Path, default=None, help="corpus and outputs (default: a new /tmp dir)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run both commands this many times (best wall)")
    parser.add_argument("--_generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_open_r1", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    benchmark_dir = args.benchmark_dir or args.data / "benchmarks"
    work = args.work or Path(tempfile.mkdtemp(prefix="decontam-bench-"))
    corpus = work / f"corpus-{args.rows}" / "corpus.jsonl"
    if args._generate:
        generate(args.rows, corpus.parent, args.data, benchmark_dir)
        return
    if args._open_r1:
        open_r1(corpus, work / "open-r1", benchmark_dir)
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "1"}
    me = [sys.executable, __file__, "--rows", str(args.rows), "--data", str(args.data)]
    me += ["--benchmark-dir", str(benchmark_dir), "--work", str(work)]
    if not corpus.is_file():
        print(f"generating {args.rows:,} rows in {corpus.parent} …", flush=True)
        subprocess.run([*me, "--_generate"], check=True, env=env)
    import polars as pl

    truth = pl.read_parquet(corpus.parent / "truth.parquet")
    longcot = str(Path(sys.executable).parent / "longcot")  # the installed entry point, this checkout's code
    ours_cmd = [longcot, "decontaminate", str(corpus), "--out", str(work / "longcot")]
    ours_cmd += ["--benchmark-dir", str(benchmark_dir)]
    runs: dict[str, list[tuple[float, float, float]]] = {"longcot": [], "open-r1": []}
    for _ in range(args.repeat):
        for name, cmd in (("open-r1", [*me, "--_open_r1"]), ("longcot", ours_cmd)):
            shutil.rmtree(work / "longcot", ignore_errors=True)  # a rerun into it would reuse its stages
            wall, cpu, rss, _ = timed(cmd, env, work)
            runs[name].append((wall, cpu, rss))
            print(f"  {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.2f} GB", flush=True)
    results = {
        "longcot": quality(truth, flagged_ids(work / "longcot" / "flagged.jsonl", meta=True)),
        "open-r1": quality(truth, flagged_ids(work / "open-r1" / "contaminated.jsonl", meta=False)),
    }
    print(
        f"\n{args.rows:,} rows vs every registered benchmark; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    header = f"{'command':<10} {'wall s':>7} {'CPU s':>6} {'peak GB':>8} {'recall':>7} {'verbatim':>9} {'reformat':>9} "
    print(header + f"{'prompted':>9} {'false alarms':>13} {'overlap rows flagged':>21}")
    for name, result in results.items():
        wall, cpu, rss = min(runs[name])
        print(
            f"{name:<10} {wall:>7.1f} {cpu:>6.1f} {rss:>8.2f} {result['recall']:>7.3f} {result['verbatim']:>9.3f} "
            f"{result['reformatted']:>9.3f} {result['prompted']:>9.3f} {result['false_alarms']:>12.3%} "
            f"{result['overlap_flagged']:>21.1%}"
        )
    ratio = min(runs["open-r1"])[0] / min(runs["longcot"])[0]
    cpu_ratio = min(r[1] for r in runs["open-r1"]) / min(r[1] for r in runs["longcot"])
    print(
        f"longcot decontaminate is {ratio:.2f}x open-r1's 8-gram method (wall, best of {args.repeat}; "
        f"CPU time {cpu_ratio:.2f}x)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
