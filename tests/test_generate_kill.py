"""kill -9 in the middle of generation, then a restart: exactly n samples per problem, nothing paid twice.

The stage runs in a subprocess against a fake server in this process, which records every request
by (prompt hash, sample). After SIGKILL, the samples already in the cache are the finished ones:
the restart must not ask for any of them, and must ask exactly once for each of the others.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI, stage_process, write_problems

from stages.generate import GenerateConfig
from stages.generate.stage import _prompts
from stages.llm import LLMClient
from stages.llm.client import CACHE_FILE

PROBLEMS, N = 30, 4


def cached_keys(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT key FROM samples")}


def test_sigkill_then_restart(tmp_path: Path, monkeypatch) -> None:
    problems = write_problems(tmp_path / "in", PROBLEMS)
    with FakeOpenAI(latency=0.05) as fake:
        monkeypatch.setenv("KILL_BASE_URL", fake.base_url)
        monkeypatch.setenv("KILL_API_KEY", "sk-kill")
        cfg = GenerateConfig(
            llm=dict(
                model="fake-teacher",
                base_url_env="KILL_BASE_URL",
                api_key_env="KILL_API_KEY",
                n=N,
                concurrency=4,
                cache_dir=tmp_path / "cache",
                progress=False,
            )
        )
        proc = stage_process(cfg, problems, tmp_path / "out")
        deadline = time.monotonic() + 60
        while sum(fake.answered.values()) < PROBLEMS * N // 3:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the stage never got going"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert not (tmp_path / "out").exists(), "a killed stage must not look finished"

        finished = cached_keys(tmp_path / "cache" / CACHE_FILE)
        with LLMClient(cfg.llm) as client:
            key_to_sample = {
                key: (p.prompt_hash, i)
                for p in _prompts(pl.read_parquet(problems), cfg, client)
                for i, key in enumerate(p.keys)
            }
        finished_samples = {key_to_sample[k] for k in finished}
        assert 0 < len(finished) < PROBLEMS * N
        mark = len(fake.log)
        answered_before = dict(fake.answered)

        proc = stage_process(cfg, problems, tmp_path / "out")
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        report = json.loads(stdout.strip().splitlines()[-1])

        after = [(prompt, sample) for _, prompt, samples, _ in fake.log[mark:] for sample in samples]
    assert not finished_samples & set(after), "a finished sample was requested again after the restart"
    assert len(after) == len(set(after)) == PROBLEMS * N - len(finished)
    assert report["details"]["cache_hits"] == len(finished)
    # a sample answered before the kill but not yet committed may be paid twice: only those in flight
    twice = {k for k, v in fake.answered.items() if v > 1}
    assert not twice & finished_samples
    assert len(twice) <= cfg.llm.concurrency
    assert len(answered_before) >= len(finished)

    kept = pl.read_parquet(tmp_path / "out" / "kept")
    assert report["rows_in"] == report["rows_kept"] == kept.height == PROBLEMS * N
    assert kept.select("uid", "sample").n_unique() == PROBLEMS * N
    assert (
        kept.group_by("uid").agg(pl.col("sample").sort())["sample"].to_list() == [list(range(N))] * PROBLEMS
    )
