"""Ctrl-C during `longcot run`: the signal reaches the whole process group (the CLI, its pool workers
and Prefect's API server). The run stops with the stage's own message, quickly and without
tracebacks, and a second run resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from stages.engine import LocalEngine
from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]


def _sigint_disposition(_: object) -> int:
    return int(signal.getsignal(signal.SIGINT))


def test_pool_workers_end_on_ctrl_c_without_a_traceback() -> None:
    with LocalEngine(2) as engine:
        dispositions = engine.map(_sigint_disposition, range(2))
    assert dispositions == [int(signal.SIG_DFL)] * 2


def _recipe(tmp_path: Path, shared_data: Path, base_url: str) -> Path:
    recipe = {
        "name": "interrupted",
        "sources": [
            {
                "name": "gsm8k",
                "path": str(shared_data / "sources" / "gsm8k_train.jsonl"),
                "preset": "gsm8k_train",
                "limit": 6,
            }
        ],
        "stages": [
            {
                "stage": "generate",
                "llm": {
                    "backend": "openai",
                    "model": "fake-teacher",
                    "base_url": base_url,
                    "api_key_env": None,
                    "n": 2,
                    "concurrency": 2,
                    "cache_dir": str(tmp_path / "cache"),
                },
            }
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _longcot_run(recipe: Path, run_dir: Path, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", str(recipe), "--run-dir", str(run_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def test_ctrl_c_stops_the_run_with_the_stage_message_and_a_rerun_resumes(tmp_path, shared_data) -> None:
    run_dir = tmp_path / "run"
    with FakeOpenAI(latency=1.5) as fake:
        recipe = _recipe(tmp_path, shared_data, fake.base_url)
        process = _longcot_run(recipe, run_dir, tmp_path)
        deadline = time.monotonic() + 120
        while not fake.attempts and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake.attempts, f"the generate stage never sent a request:\n{process.communicate()[0]}"
        os.killpg(process.pid, signal.SIGINT)
        interrupted = time.monotonic()
        output, _ = process.communicate(timeout=60)
        took = time.monotonic() - interrupted
        assert process.returncode == 1, output
        assert took < 20, f"{took:.0f} s from Ctrl-C to exit:\n{output}"
        assert "stopped by SIGINT" in output and "run again to resume" in output, output
        assert "Traceback" not in output and "Connection refused" not in output, output
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "failed" and "SIGINT" in manifest["error"]
        served_before = sum(fake.answered.values())
        assert 0 < served_before < 12

        rerun = _longcot_run(recipe, run_dir, tmp_path)
        output, _ = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, output
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "succeeded"
        assert sum(fake.answered.values()) == 12, "the re-run asks only for the samples not yet cached"
        assert max(fake.answered.values()) == 1
