"""Teacher economics online: a stopped run pays for nothing twice, hung requests cost seconds, failed
attempts are costed, and a budget stops sending before it is exceeded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI, write_problems

from stages.generate import GenerateConfig
from stages.registry import run_stage

ROOT = Path(__file__).resolve().parents[1]


def llm(fake: FakeOpenAI, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "model": "fake-teacher",
        "base_url": fake.base_url,
        "api_key_env": None,
        "n": 2,
        "concurrency": 4,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "cache_dir": str(tmp_path / "cache"),
        "progress": False,
    } | overrides


def generate(problems: Path, cfg: GenerateConfig, out: Path) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    report = run_stage("generate", problems, cfg, out, force=True).model_dump(mode="json")
    read = lambda d: pl.read_parquet(d) if list(d.glob("*.parquet")) else pl.DataFrame()  # noqa: E731
    return report, read(out / "kept"), read(out / "dropped")


def _cli(settings: Path, problems: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "flows.cli", "generate", str(problems), "--out", str(out)]
    return subprocess.Popen(
        [*command, "--config", str(settings)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_then_rerun_serves_every_sample_once(tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "in", 40)
    settings = tmp_path / "gen.yaml"
    with FakeOpenAI(latency=0.15) as fake:
        settings.write_text(yaml.safe_dump({"llm": llm(fake, tmp_path)}))
        proc = _cli(settings, problems, tmp_path / "out")
        deadline = time.monotonic() + 60
        while sum(fake.attempts.values()) < 20:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never got going"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 143, stdout + stderr
        assert "stopped by SIGTERM" in stdout and not (tmp_path / "out").exists()
        served_before = sum(fake.answered.values())
        proc = _cli(settings, problems, tmp_path / "out")
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stdout + stderr
    assert 0 < served_before < 80
    assert len(fake.answered) == 80 and set(fake.answered.values()) == {1}, "every sample served exactly once"


def test_hung_requests_are_cancelled_after_a_derived_timeout(tmp_path: Path) -> None:
    """No timeout configured: the first requests are measured, the timeout is derived from max_tokens
    and that speed (seconds, not the 30 s the server hangs), and hung requests are retried."""
    problems = write_problems(tmp_path / "in", 30)
    with FakeOpenAI(latency=0.02, fault_rate=0.1, faults=("hang",), hang_s=30, seed=2) as fake:
        cfg = GenerateConfig(llm=llm(fake, tmp_path, max_tokens=64, concurrency=8))
        started = time.monotonic()
        report, kept, _ = generate(problems, cfg, tmp_path / "out")
        wall = time.monotonic() - started
    d = report["details"]
    assert kept.height == 60 and fake.faults_sent["hang"] > 0
    assert d["retries_by_kind"]["timeout"] == fake.faults_sent["hang"]
    assert d["timeout_s"] < 3 and wall < 15, (d["timeout_s"], wall)


def test_failed_attempts_are_costed_next_to_the_successful_ones(tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "in", 20)
    prices = {"input_per_1m": 1000.0, "output_per_1m": 4000.0}
    with FakeOpenAI(fault_rate=0.3, faults=("500", "malformed", "429"), seed=5) as fake:
        cfg = GenerateConfig(llm=llm(fake, tmp_path, prices=prices, timeout_s=5))
        report, kept, _ = generate(problems, cfg, tmp_path / "out")
    d = report["details"]
    faults = sum(fake.faults_sent.values())
    assert kept.height == 40 and d["failed_attempts"] == faults > 0
    assert d["cost_usd"] == pytest.approx(kept["cost_usd"].sum())
    # 500s and malformed bodies reached the server (prompt billed, estimated); 429s were rejected
    billed = fake.faults_sent["500"] + fake.faults_sent["malformed"]
    assert d["failed_tokens_in"] > 0 and d["failed_cost_usd"] == d["failed_cost_estimated_usd"] > 0
    assert 20 < d["failed_tokens_in"] / billed < 200, "about one prompt (chars / 3) per billed failure"
    assert d["total_cost_usd"] == pytest.approx(d["cost_usd"] + d["failed_cost_usd"])


def test_budget_stops_sending_before_it_is_exceeded(tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "in", 30)
    # worst case per request: 100 tokens x $1000/1M = $0.10; the fake answers ~25 tokens
    prices = {"input_per_1m": 0.0, "output_per_1m": 1000.0}
    with FakeOpenAI() as fake:
        cfg = GenerateConfig(llm=llm(fake, tmp_path, n=1, max_tokens=100, prices=prices, budget_usd=0.5))
        report, kept, dropped = generate(problems, cfg, tmp_path / "out")
    d = report["details"]
    assert d["stopped"] == "budget" and d["total_cost_usd"] <= 0.5
    assert 0 < kept.height < 30 and report["rows_in"] == kept.height + dropped.height == 30
    assert set(dropped["drop_reason"]) == {"budget_exhausted"}
    assert sum(fake.answered.values()) == kept.height
