"""End to end through Prefect: counts add up, re-runs are cache hits, failed runs resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from flows.build import build_dataset
from flows.cli import app
from stages import registry
from stages.export import ExportConfig
from stages.stage import Context, Decision, MapStage
from stages.store import fingerprint

pytestmark = pytest.mark.slow


@pytest.fixture
def recipe_path(tmp_path, shared_data) -> Path:
    body = {
        "name": "flowtest",
        "sources": [
            {
                "name": "gsm8k",
                "path": str(shared_data / "sources/gsm8k_train.jsonl"),
                "preset": "gsm8k_train",
                "limit": 300,
            },
            {
                "name": "math",
                "path": str(shared_data / "sources/deepscaler_train_math.jsonl"),
                "preset": "deepscaler_train_math",
                "limit": 300,
            },
            {
                "name": "math_again",
                "path": str(shared_data / "sources/deepscaler_train_math.jsonl"),
                "preset": "deepscaler_train_math",
                "limit": 50,
            },
        ],
        "stages": [{"stage": "exact_dedup"}, {"stage": "export"}],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def check_counts(manifest: dict) -> None:
    previous_kept = None
    for stage in manifest["stages"]:
        assert stage["rows_in"] == stage["rows_kept"] + stage["rows_dropped"], stage
        if previous_kept is not None:
            assert stage["rows_in"] == previous_kept, "each stage reads what the previous one kept"
        previous_kept = stage["rows_kept"]


def test_run_rerun_and_stage_rebuild(recipe_path, tmp_path):
    run_dir = tmp_path / "runs" / "flowtest"
    first = build_dataset(str(recipe_path), str(run_dir))
    assert first["status"] == "succeeded"
    assert [s["dir"] for s in first["stages"]] == ["01-collect", "02-exact_dedup", "03-export"]
    check_counts(first)
    assert first["stages"][0]["rows_in"] == 650
    assert first["stages"][1]["drop_reasons"] == {"duplicate": 50}, "math_again repeats 50 math rows"
    assert not any(s["cached"] for s in first["stages"])
    assert (run_dir / "03-export" / "rl").is_dir() and (run_dir / "03-export" / "sft").is_dir()
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64") >= 3, "funnel, drop reasons and length plots are inlined"
    assert "math_again" in page and "duplicate 50" in page

    second = build_dataset(str(recipe_path), str(run_dir))
    assert all(s["cached"] for s in second["stages"]), "an unchanged re-run is all cache hits"

    before = fingerprint(run_dir / "02-exact_dedup" / "kept")
    shutil.rmtree(run_dir / "02-exact_dedup")
    third = build_dataset(str(recipe_path), str(run_dir))
    assert [s["cached"] for s in third["stages"]] == [True, False, True]
    assert fingerprint(run_dir / "02-exact_dedup" / "kept") == before

    body = yaml.safe_load(recipe_path.read_text())
    body["sources"] = body["sources"][:2]
    changed = recipe_path.with_name("changed.yaml")
    changed.write_text(yaml.safe_dump(body))
    fourth = build_dataset(str(changed), str(run_dir))
    assert [s["cached"] for s in fourth["stages"]] == [False, False, False]
    assert fourth["stages"][1]["drop_reasons"] == {}


class CrashingExport(MapStage[ExportConfig]):
    """An export that dies on its first batch, after the stages before it have published."""

    name, Config = "export", ExportConfig

    def decide(self, batch, config, ctx: Context) -> Decision:
        raise RuntimeError("killed mid-export")


def test_a_failed_run_resumes_without_duplicates(recipe_path, tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "resume"
    real_export = registry.STAGES["export"]
    monkeypatch.setitem(registry.STAGES, "export", CrashingExport())
    with pytest.raises(RuntimeError, match="killed mid-export"):
        build_dataset(str(recipe_path), str(run_dir))
    failed = yaml.safe_load((run_dir / "manifest.json").read_text())
    assert failed["status"] == "failed" and "killed mid-export" in failed["error"]
    assert not (run_dir / "03-export").exists() and not (run_dir / "03-export.partial").exists()

    monkeypatch.setitem(registry.STAGES, "export", real_export)
    resumed = build_dataset(str(recipe_path), str(run_dir))
    assert [s["cached"] for s in resumed["stages"]] == [True, True, False]
    sft = pl.read_parquet(run_dir / "03-export" / "sft")
    assert sft.height == resumed["stages"][1]["rows_kept"] == sft["uid"].n_unique()


def test_cli_run_report_inspect(recipe_path, tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "cli-run"
    result = runner.invoke(app, ["run", str(recipe_path), "--run-dir", str(run_dir), "--limit", "20"])
    assert result.exit_code == 0, result.output
    assert "02-exact_dedup" in result.output and "manifest:" in result.output
    manifest = yaml.safe_load((run_dir / "manifest.json").read_text())
    assert manifest["stages"][0]["rows_in"] == 60, "--limit caps every source"

    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0 and "03-export" in result.output
    result = runner.invoke(app, ["inspect", str(run_dir), "collect", "-n", "2"])
    assert result.exit_code == 0 and result.output.count("gsm8k") >= 2

    result = runner.invoke(app, ["inspect", str(run_dir), "dedup", "-n", "3"])
    assert result.exit_code == 0 and "02-exact_dedup: exact dedup removed" in result.output

    result = runner.invoke(app, ["inspect", str(run_dir), "nosuchstage"])
    assert result.exit_code == 1 and "no stage 'nosuchstage'" in result.output
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources: []\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 1 and "sources: List should have at least 1 item" in result.output
