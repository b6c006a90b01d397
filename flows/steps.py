"""TRANSITIONAL: the old run_stage/run_collect helpers, now thin calls into stages.runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stages.collect import CollectConfig, FieldMap, SourceSpec
from stages.registry import stage
from stages.runner import Step, run_step, stage_dir

__all__ = ["collect_files", "run_collect", "run_stage", "stage_dir"]


def run_stage(
    fn: Any, input_dir: Path, config: BaseModel, out_dir: Path, name: str, **_: Any
) -> dict[str, Any]:
    found = fn if hasattr(fn, "name") and not callable(fn) else stage(name)
    return run_step(Step(found, config, input_dir, out_dir), force=True).report.model_dump(mode="json")


def run_collect(config: CollectConfig, out_dir: Path, **_: Any) -> dict[str, Any]:
    return run_step(Step(stage("collect"), config, None, out_dir), force=True).report.model_dump(mode="json")


def collect_files(
    inputs: list[Path], fields: FieldMap, out_dir: Path, domain: str = "math"
) -> dict[str, Any]:
    sources = [SourceSpec(name=p.stem, path=p, fields=fields, domain=domain) for p in inputs]  # type: ignore[arg-type]
    return run_collect(CollectConfig(sources=sources), out_dir)
