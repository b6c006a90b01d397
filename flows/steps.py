"""Run one stage into its directory, without Prefect: shared by the flow's tasks and the standalone
commands (`longcot dedup`, `longcot decontaminate`, `longcot verify`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stages import collect
from stages.collect import CollectConfig, FieldMap, SourceSpec
from stages.store import StageWriter

StageFn = Callable[[Path, Any, StageWriter], dict[str, Any]]


def stage_dir(root: Path, index: int, name: str) -> Path:
    return root / f"{index:02d}-{name}"


def run_stage(
    fn: StageFn, input_dir: Path, config: BaseModel, out_dir: Path, name: str, **header: Any
) -> dict[str, Any]:
    """Run `fn` on the shards in `input_dir`, publish `out_dir`, return its report."""
    with StageWriter(out_dir, name) as out:
        details = fn(input_dir, config, out)
        return out.finish(details, config=config.model_dump(mode="json"), **header)


def run_collect(config: CollectConfig, out_dir: Path, **header: Any) -> dict[str, Any]:
    with StageWriter(out_dir, "collect") as out:
        details = collect.run(config, out)
        return out.finish(details, config=config.model_dump(mode="json"), **header)


def collect_files(
    inputs: list[Path], fields: FieldMap, out_dir: Path, domain: str = "math"
) -> dict[str, Any]:
    """Collect arbitrary JSONL/JSON/Parquet/CSV files (one source each, labelled by file name)."""
    sources = [SourceSpec(name=p.stem, path=p, fields=fields, domain=domain) for p in inputs]  # type: ignore[arg-type]
    return run_collect(CollectConfig(sources=sources), out_dir)
