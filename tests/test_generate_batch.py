"""`mode: batch` end to end against the fake Batch API (Files + Batches): split at the request limit,
failed items retried in a follow-up batch, half-price cost, and kill -9 / resume that never submits
an item twice."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI, stage_process, write_problems

from stages.generate import GenerateConfig
from stages.llm.batch import Ledger
from stages.llm.client import CACHE_FILE
from stages.registry import run_stage

PRICES = {"input_per_1m": 2.0, "output_per_1m": 8.0}


def config(fake: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **llm: Any) -> GenerateConfig:
    monkeypatch.setenv("BATCH_KEY", "sk-batch")
    values: dict[str, Any] = {
        "model": "fake-teacher",
        "mode": "batch",
        "base_url": fake.base_url,
        "api_key_env": "BATCH_KEY",
        "n": 2,
        "cache_dir": tmp_path / "cache",
        "progress": False,
        "prices": PRICES,
        "batch": {"poll_s": 0.05, "max_requests": 10},
    }
    return GenerateConfig(llm=values | llm)


def generate(problems: Path, cfg: GenerateConfig, out: Path) -> tuple[dict, pl.DataFrame]:
    report = run_stage("generate", problems, cfg, out, force=True).model_dump(mode="json")
    return report, pl.read_parquet(out / "kept")


def test_batch_mode_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "in", 12)
    with FakeOpenAI(batch_fault_rate=0.25, seed=3) as fake:
        report, kept = generate(problems, config(fake, tmp_path, monkeypatch), tmp_path / "out")
        batches = len(fake.batches)
        again, _ = generate(problems, config(fake, tmp_path, monkeypatch), tmp_path / "out2")
    d = report["details"]
    assert report["rows_in"] == report["rows_kept"] == kept.height == 24
    assert kept.select("uid", "sample").n_unique() == 24
    failed_first = sum(1 for v in fake.submitted.values() if v > 1)
    assert failed_first > 0 and d["retries_by_kind"] == {"http_500": failed_first}
    assert batches >= 3 + 1, "24 items at 10 per batch, then a follow-up batch for the failed ones"
    assert all(v == 1 for v in fake.answered.values()) and len(fake.answered) == 24
    assert d["batch_requests"] == 24 and d["failed_attempts"] == failed_first
    online = (d["tokens_in"] * PRICES["input_per_1m"] + d["tokens_out"] * PRICES["output_per_1m"]) / 1e6
    assert d["cost_usd"] == pytest.approx(online / 2) == pytest.approx(kept["cost_usd"].sum())
    assert again["details"]["cache_hits"] == 24 and len(fake.batches) == batches, "a re-run sends nothing"


def _recorded_batches(cache: Path) -> list[str]:
    if not cache.exists():
        return []
    with sqlite3.connect(cache) as db:
        try:
            return [r[0] for r in db.execute("SELECT batch_id FROM batches WHERE batch_id IS NOT NULL")]
        except sqlite3.OperationalError:
            return []


def test_kill_while_batches_run_then_resume_submits_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = write_problems(tmp_path / "in", 15)
    with FakeOpenAI(batch_s=30.0) as fake:  # the batches outlive the first run
        cfg = config(fake, tmp_path, monkeypatch)
        proc = stage_process(cfg, problems, tmp_path / "out")
        deadline = time.monotonic() + 60
        while len(_recorded_batches(tmp_path / "cache" / CACHE_FILE)) < 3:  # 30 items, 10 per batch
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the batches were never submitted"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        created = len(fake.batches)
        for batch_id in list(fake.batches):  # the provider finishes them while nobody watches
            fake._loop.call_soon_threadsafe(fake._run_batch, batch_id, _lines(fake, batch_id))
        proc = stage_process(cfg, problems, tmp_path / "out")
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout.strip().splitlines()[-1])
    assert len(fake.batches) == created == 3, "the resumed run polled the same batches"
    assert sorted(fake.submitted.values()) == [1] * 30, "no item submitted twice"
    assert report["rows_kept"] == 30 and report["details"]["batch_requests"] == 30


def _lines(fake: FakeOpenAI, batch_id: str) -> list[dict]:
    content = fake.files[fake.batches[batch_id]["input_file_id"]].decode()
    return [json.loads(line) for line in content.splitlines()]


def test_a_batch_created_but_not_recorded_is_found_not_resubmitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between `batches.create` and recording its id: the next run finds the batch by the
    ledger id in its metadata instead of creating a second one."""
    problems = write_problems(tmp_path / "in", 4)
    original = Ledger.set

    def crash_before_recording(self: Ledger, ledger_id: str, **fields: str) -> None:
        if "batch_id" in fields:
            raise KeyboardInterrupt("killed")
        original(self, ledger_id, **fields)

    with FakeOpenAI() as fake:
        cfg = config(fake, tmp_path, monkeypatch)
        monkeypatch.setattr(Ledger, "set", crash_before_recording)
        with pytest.raises(KeyboardInterrupt):
            generate(problems, cfg, tmp_path / "out")
        assert len(fake.batches) == 1
        monkeypatch.setattr(Ledger, "set", original)
        report, kept = generate(problems, cfg, tmp_path / "out")
    assert len(fake.batches) == 1 and sorted(fake.submitted.values()) == [1] * 8
    assert kept.height == 8 and report["details"]["batch_requests"] == 8


def test_batch_budget_sends_only_what_it_can_pay_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "in", 10)
    prices = {"input_per_1m": 0.0, "output_per_1m": 1000.0}  # worst case $0.10 a sample, $0.05 batched
    with FakeOpenAI() as fake:
        cfg = config(fake, tmp_path, monkeypatch, n=1, max_tokens=100, prices=prices, budget_usd=0.3)
        report, kept = generate(problems, cfg, tmp_path / "out")
    d = report["details"]
    assert kept.height == 6 == sum(fake.submitted.values()), "6 x $0.05 worst case fit in $0.30"
    assert d["stopped"] == "budget" and d["total_cost_usd"] <= 0.3
    assert report["drop_reasons"] == {"budget_exhausted": 4}
