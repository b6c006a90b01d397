"""`longcot run` as a new user meets it: the plan before any work, recipe problems found up front in
one line each, errors from inside the flow in one line, and a run.log left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from stages import registry
from stages.dedup.exact import ExactDedupConfig
from stages.stage import Context, Decision, MapStage

runner = CliRunner()


def write_recipe(tmp_path: Path, shared_data: Path, **changes) -> Path:
    body = {
        "name": "clitest",
        "sources": [
            {
                "name": "gsm8k",
                "path": str(shared_data / "sources/gsm8k_train.jsonl"),
                "preset": "gsm8k_train",
                "limit": 40,
            },
            {"name": "aime", "path": str(shared_data / "sources/deepscaler_train_aime.jsonl"), "preset": "deepscaler_train_aime"},
        ],
        "stages": [
            {"stage": "exact_dedup"},
            {"stage": "decontaminate", "benchmark_dir": str(shared_data / "benchmarks")},
            {"stage": "generate", "limit": 100, "llm": {"model": "deepseek-reasoner", "n": 4, "max_tokens": 8000,
             "prices": {"input_per_1m": 0.55, "output_per_1m": 2.19}}},
        ],
    }  # fmt: skip
    body.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, shared_data):
    recipe = write_recipe(tmp_path, shared_data)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["run", str(recipe), "--run-dir", str(run_dir), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert not run_dir.exists(), "a dry run writes nothing"
    out = " ".join(result.output.split())
    assert "gsm8k" in out and "40" in out, "the limited source's row estimate"
    assert "975" in out, "the AIME file's rows, counted from the file"
    assert "at most 1,015 problems collected" in out
    assert "deepseek-reasoner" in out and "at most 400 samples" in out, "limit 100 x n 4"
    # 400 samples x (250 prompt tokens x $0.55 + 8,000 completion tokens x $2.19) per million
    assert "$7.06" in out


def test_recipe_problems_are_found_before_any_work(tmp_path, shared_data):
    stages = [{"stage": "decontaminate", "benchmarks": ["math500", "no_such_bench"]}]
    sources = [
        {"name": "gone", "path": str(tmp_path / "missing.jsonl")},
        {
            "name": "typo",
            "path": str(shared_data / "sources/gsm8k_train.jsonl"),
            "fields": {"problem": "questoin"},
        },
    ]
    recipe = write_recipe(tmp_path, shared_data, stages=stages, sources=sources)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["run", str(recipe), "--run-dir", str(run_dir)])
    assert result.exit_code == 1
    assert "source gone: no file at" in result.output
    assert "questoin" in result.output and "question" in result.output, "the field and the keys it has"
    assert "no_such_bench" in result.output and "stages.0 (decontaminate)" in result.output
    assert "Traceback" not in result.output
    assert not run_dir.exists(), "nothing was collected"


class FailingDedup(MapStage[ExactDedupConfig]):
    name, Config = "exact_dedup", ExactDedupConfig

    def decide(self, batch, config, ctx: Context) -> Decision:
        raise ValueError("the disk is full (simulated)")


@pytest.mark.slow
def test_an_error_inside_the_flow_is_one_line_and_the_run_leaves_a_log(tmp_path, shared_data, monkeypatch):
    recipe = write_recipe(tmp_path, shared_data, stages=[{"stage": "exact_dedup"}])
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["run", str(recipe), "--run-dir", str(run_dir), "--workers", "1"])
    assert result.exit_code == 0, result.output
    log = (run_dir / "run.log").read_text()
    assert "01-collect: 1,015 in" in log and "02-exact_dedup" in log and "manifest:" in log

    monkeypatch.setitem(registry.STAGES, "exact_dedup", FailingDedup())
    failed = runner.invoke(app, ["run", str(recipe), "--run-dir", str(tmp_path / "run2"), "--workers", "1"])
    assert failed.exit_code == 1
    assert "error: the disk is full (simulated)" in failed.output
    assert "Traceback" not in failed.output and failed.output.count("\n") < 12, failed.output
    assert "the disk is full" in (tmp_path / "run2" / "run.log").read_text()
