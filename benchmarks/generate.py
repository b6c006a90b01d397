"""Generation throughput against a local fake endpoint with fixed latency, then the cache re-run.

    .venv/bin/python benchmarks/generate.py [--requests 2000] [--concurrency 64] [--latency 0.1]
    .venv/bin/python benchmarks/generate.py --faults [--requests 2000] [--concurrency 64] [--latency 0.5]

`--faults` times the whole `longcot generate` command (a process: wall, peak RSS) against a clean
fake server and against one where 20% of requests fail (429 with Retry-After, 500, malformed JSON,
dropped connections, slow answers, and hangs of 120 s), at the same concurrency, and prints both and
the ratio (target: <= 2). It then runs the same problems in `mode: batch` (the fake Batch API) for
the batch vs online cost at the same prices, and kills a run with SIGKILL halfway and re-runs it to
count the samples served twice (the in-flight requests a kill -9 repays).

The fake server runs in its own process (so its CPU is not the client's), answering every request
after `latency` seconds. Ideal throughput is concurrency / latency; the target is >= 90% of it.
Client CPU per request is the stage process's CPU time over the request phase / requests.
`--cpu-teacher qwen2.5-coder-0.5b` instead times the quickstart teacher on MATH train problems
(20 problems x 2 samples, max_tokens 512 by default). The re-run of the same problems must make no request and finish in < 5 s. A bare aiohttp loop
against the same server is timed too: on a shared, loaded machine it shows the ceiling of the moment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import openai  # noqa: F401  (imported up front: a one-off cost, not a per-request one)
import polars as pl

from stages.generate import GenerateConfig
from stages.registry import run_stage

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_openai.py"
PRICES = {"input_per_1m": 0.55, "output_per_1m": 2.19}  # DeepSeek-R1's list prices
sys.path.insert(0, str(FAKE.parent))
from fake_openai import write_problems  # noqa: E402


async def _bare_client(url: str, requests: int, concurrency: int) -> float:
    """Requests/s of a minimal aiohttp client on the same server: what this machine allows right now."""
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            async with gate:
                body = {"model": "m", "messages": [{"role": "user", "content": f"bare {i}"}]}
                async with session.post(url + "/chat/completions", json=body) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return requests / (time.perf_counter() - started)


def timed_stage(problems: Path, config: GenerateConfig, out: Path) -> tuple[dict, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    report = run_stage("generate", problems, config, out, force=True).model_dump(mode="json")
    return report, time.perf_counter() - wall, time.process_time() - cpu


def cpu_teacher(args: argparse.Namespace) -> None:
    """Quickstart scale with the real CPU teacher: MATH train problems, n samples, max_tokens."""
    source = (
        Path(__file__).resolve().parents[2] / "shared" / "data" / "sources" / "deepscaler_train_math.jsonl"
    )
    rows = []
    with source.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            rows.append({"uid": f"m{len(rows):04d}", "source": "math", "domain": "math", **row})
            if len(rows) == args.problems:
                break
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in" / "kept").mkdir(parents=True)
        frame = pl.DataFrame(rows).select(
            "uid", "source", "domain", "problem", pl.col("answer").cast(pl.String)
        )
        frame.write_parquet(root / "in" / "kept" / "part-00000.parquet")
        config = GenerateConfig(
            llm=dict(
                backend="local",
                model=args.cpu_teacher,
                n=args.n,
                n_per_request=False,  # exact usage per sample (llama.cpp reports one choice's usage when n > 1)
                max_tokens=args.max_tokens,
                local_parallel=args.parallel,
                local_threads=args.threads,
                timeout_s=1800,
                cache_dir=root / "cache",
                progress=True,
            )
        )
        report, wall, _ = timed_stage(root / "in" / "kept", config, root / "out")
        kept = pl.read_parquet(root / "out" / "kept")
    d = report["details"]
    result = {
        "model": args.cpu_teacher,
        "problems": args.problems,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "parallel_slots": args.parallel,
        "threads": args.threads,
        "wall_s_including_model_load": round(wall, 1),
        "samples": kept.height,
        "truncated": d["truncated"],
        "responses_with_boxed": int(kept["response"].str.contains("boxed", literal=True).sum()),
        "answer_in_response": int(
            kept.select(pl.col("response").str.contains(pl.col("answer"), literal=True)).to_series().sum()
        ),
        "tokens_out": d["tokens_out"],
        "output_tokens_per_s": d["output_tokens_per_s"],
    }
    print(json.dumps(result, indent=2))


class FakeServer:
    """tests/fake_openai.py in its own process (its CPU is not the client's)."""

    def __init__(self, *options: str):
        self.proc = subprocess.Popen([sys.executable, str(FAKE), *options], stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats") as response:
            return json.loads(response.read())

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def _cli(root: Path, problems: Path, name: str, llm: dict, kill_at: int | None = None, server=None) -> dict:
    """`python -m flows.cli generate` as a process: wall, peak RSS, its report (None if killed)."""
    settings = root / f"{name}.yaml"
    settings.write_text(json.dumps({"llm": llm}))
    out = root / f"out-{name}"
    command = [sys.executable, "-m", "flows.cli", "generate", str(problems), "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "--config", str(settings)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if kill_at is not None:
        while server.stats()["served"] < kill_at and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    output, _ = proc.communicate()
    wall = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    if report is None and kill_at is None:
        raise RuntimeError(f"{name}: generate failed:\n{output}")
    return {"wall_s": round(wall, 2), "peak_rss_mb_so_far": round(rss_mb), "report": report}


def faults(args: argparse.Namespace) -> None:
    """Clean vs 20% faults with 120 s hangs (same concurrency), batch vs online cost, kill -9 repaid."""
    base = {
        "model": "fake-teacher",
        "api_key_env": None,
        "n": 1,
        "concurrency": args.concurrency,
        "max_tokens": 64,  # the fake answers ~35 tokens; the derived timeout scales with max_tokens
        "prices": PRICES,
        "progress": False,
    }
    result: dict = {"requests": args.requests, "concurrency": args.concurrency, "latency_s": args.latency}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        problems = write_problems(root / "problems", args.requests, prefix="bench-")
        runs = {}
        for name, options in (("clean", []), ("faulty", ["--fault-rate", "0.2", "--hang-s", "120"])):
            with FakeServer("--latency", str(args.latency), *options) as server:
                llm = base | {"base_url": server.url, "cache_dir": str(root / f"cache-{name}")}
                runs[name] = _cli(root, problems, name, llm)
                runs[name]["faults_sent"] = server.stats()["faults"]
        for name, run_ in runs.items():
            d = run_.pop("report")["details"]
            run_ |= {k: d[k] for k in ("request_phase_s", "attempts", "retries_by_kind", "timeout_s")}
            run_ |= {k: d[k] for k in ("concurrency_min", "cost_usd", "failed_cost_usd", "total_cost_usd")}
            result[name] = run_
        result["wall_ratio_faulty_vs_clean"] = round(runs["faulty"]["wall_s"] / runs["clean"]["wall_s"], 2)
        with FakeServer("--latency", str(args.latency), "--batch-s", "1") as server:
            llm = base | {"base_url": server.url, "cache_dir": str(root / "cache-batch"), "mode": "batch"}
            llm["batch"] = {"poll_s": 0.5}
            batch = _cli(root, problems, "batch", llm)["report"]["details"]
        result["cost_online_usd"] = runs["clean"]["cost_usd"]
        result["cost_batch_usd"] = batch["cost_usd"]
        with FakeServer("--latency", str(args.latency)) as server:
            llm = base | {"base_url": server.url, "cache_dir": str(root / "cache-kill")}
            _cli(root, problems, "kill", llm, kill_at=args.requests // 2, server=server)
            served_at_kill = server.stats()["served"]
            _cli(root, problems, "kill-rerun", llm)
            stats = server.stats()
        result["kill9"] = {
            "needed": args.requests,
            "served_at_kill": served_at_kill,
            "served": stats["served"],
            "repaid": stats["served"] - stats["distinct"],
            "bound (concurrency)": args.concurrency,
        }
    print(json.dumps(result, indent=2))
    ok = result["wall_ratio_faulty_vs_clean"] <= 2 and result["kill9"]["repaid"] <= args.concurrency
    print("PASS" if ok else "BELOW TARGET")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=None, help="default 0.1 (0.5 with --faults)")
    parser.add_argument("--faults", action="store_true", help="clean vs 20%% faults, batch cost, kill -9")
    parser.add_argument("--http-client", default="aiohttp", choices=["aiohttp", "openai"])
    parser.add_argument("--cpu-teacher", help="instead: time the CPU teacher (e.g. qwen2.5-coder-0.5b)")
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--parallel", type=int, default=2, help="decoding slots of the CPU teacher")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.cpu_teacher:
        cpu_teacher(args)
        return
    if args.faults:
        args.latency = args.latency or 0.5
        faults(args)
        return
    args.latency = args.latency or 0.1

    server = subprocess.Popen(
        [sys.executable, str(FAKE), "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        os.environ["BENCH_BASE_URL"] = server.stdout.readline().strip()  # type: ignore[union-attr]
        os.environ["BENCH_API_KEY"] = "sk-bench"
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            problems = write_problems(root / "problems", args.requests, prefix="bench-")
            config = GenerateConfig(
                llm=dict(
                    model="fake-teacher",
                    base_url_env="BENCH_BASE_URL",
                    api_key_env="BENCH_API_KEY",
                    n=1,
                    concurrency=args.concurrency,
                    http_client=args.http_client,
                    max_tokens=256,
                    cache_dir=root / "cache",
                    progress=False,
                )
            )
            first, wall, cpu = timed_stage(problems, config, root / "out1")
            details = first["details"]
            ideal = args.concurrency / args.latency
            achieved = details["requests"] / details["request_phase_s"]
            second, rerun_wall, _ = timed_stage(problems, config, root / "out2")
            bare = asyncio.run(_bare_client(os.environ["BENCH_BASE_URL"], args.requests, args.concurrency))
            result = {
                "requests": details["requests"],
                "http_client": args.http_client,
                "concurrency": args.concurrency,
                "latency_s": args.latency,
                "ideal_req_per_s": round(ideal, 1),
                "achieved_req_per_s": round(achieved, 1),
                "fraction_of_ideal": round(achieved / ideal, 3),
                "bare_aiohttp_req_per_s": round(bare, 1),
                "client_cpu_ms_per_request": round(
                    cpu / details["requests"] * 1000, 3
                ),  # whole stage, incl. writing rows,
                "stage_wall_s": round(wall, 2),
                "latency_p50_p90_p99": details["latency_s"],
                "rerun_wall_s": round(rerun_wall, 2),
                "rerun_cache_hits": second["details"]["cache_hits"],
                "rerun_requests": second["details"]["attempts"],
            }
    finally:
        server.terminate()
        server.wait(5)
    print(json.dumps(result, indent=2))
    ok = result["fraction_of_ideal"] >= 0.9 and rerun_wall < 5 and result["rerun_requests"] == 0
    print("PASS" if ok else "BELOW TARGET")


if __name__ == "__main__":
    main()
