"""Every stage a recipe or a command can name. A new stage is one module plus one line here."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from stages.classify import Classify
from stages.collect.stage import Collect
from stages.decontam import Decontaminate
from stages.dedup.embedding import EmbeddingDedup
from stages.dedup.exact import ExactDedup
from stages.dedup.minhash import MinhashDedup
from stages.engine import Engine
from stages.export import Export
from stages.generate import Generate
from stages.gradable import Gradable
from stages.passrate import PassRate
from stages.runner import Step, load_report, run_step
from stages.stage import Stage, StageReport
from stages.verify import Verify

COLLECT = Collect()

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in [
        Gradable(),
        ExactDedup(),
        MinhashDedup(),
        EmbeddingDedup(),
        Decontaminate(),
        Generate(),
        Verify(),
        PassRate(),
        Classify(),
        Export(),
    ]
}


def stage(name: str) -> Stage:
    """A stage by name (collect included); unknown names fail with the choices."""
    if name == COLLECT.name:
        return COLLECT
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join([COLLECT.name, *STAGES])}")
    return STAGES[name]


def run_stage(
    name: str | Stage,
    input_dir: Path | None,
    config: BaseModel,
    out_dir: Path,
    engine: Engine | None = None,
    force: bool = False,
) -> StageReport:
    """One stage by name (or object) into `out_dir`: what a standalone command or a test runs."""
    found = stage(name) if isinstance(name, str) else name
    return run_step(Step(found, config, input_dir, out_dir), engine, force=force).report


def read_report(stage_dir: Path) -> StageReport | None:
    """A published report.json with its details as the stage's own Details model (renderers read
    fields, not string keys: a renamed field fails in tests instead of leaving a blank)."""
    report = load_report(stage_dir)
    if report is None:
        return None
    known = STAGES.get(report.stage, COLLECT if report.stage == COLLECT.name else None)
    if known is None:
        return report
    return report.model_copy(update={"details": report.typed_details(known.Details)})
