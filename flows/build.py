"""The Prefect flow: a thin wrapper over stages.runner, one task per stage.

The runner decides cache hits from the run directory (each stage's report.json carries its key), so
the flow's tasks do not use Prefect's result cache: a fresh PREFECT_HOME over a finished run re-runs
nothing, and a deleted or edited stage directory re-runs. Every flow parameter is plain data (paths,
names, numbers), so a Prefect deployment can serve the flow as it is.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.console import say
from flows.html_report import funnel_markdown, stage_markdown, write_report
from flows.manifest import Manifest
from flows.recipe import Recipe, load_recipe, validate_recipe
from stages.engine import Engine, LocalEngine
from stages.registry import COLLECT, stage
from stages.runner import Step, StepResult, run_step, stage_dir

_engines: dict[str, Engine] = {}  # the flow's engine, by run directory: tasks take plain parameters


@task(cache_policy=NO_CACHE, persist_result=False)
def stage_task(name: str, config: dict[str, Any], input_dir: Path | None, out_dir: Path) -> StepResult:
    """Run one stage (or find it cached in its directory) and publish its artifacts."""
    found = stage(name)
    step = Step(found, found.Config.model_validate(config), input_dir, out_dir)
    result = run_step(step, _engines.get(str(out_dir.parent)))
    _publish_artifacts(result)
    return result


def _publish_artifacts(result: StepResult) -> None:
    """The stage report as Prefect artifacts, visible in the UI when a server is used."""
    report = result.report
    slug = report.stage.replace("_", "-")
    create_table_artifact(
        key=f"{slug}-drops",
        table=[{"reason": r, "rows": n} for r, n in report.drop_reasons.items()]
        or [{"reason": "-", "rows": 0}],
        description=f"{report.stage}: dropped rows by reason",
    )
    create_markdown_artifact(
        key=f"{slug}-report", markdown=stage_markdown(result), description=f"{report.stage} stage report"
    )


@flow(name="build-dataset", validate_parameters=False)
def build_dataset(
    recipe_file: str,
    run_dir: str | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    engine: str | None = None,
    workers: int | None = None,
    address: str | None = None,
    teacher: str | None = None,
) -> dict[str, Any]:
    """Validate the recipe, collect its sources, run its stages in order; returns the manifest.
    `engine`, `workers`, `address` override the recipe's `engine:` block; `teacher` (`cpu`,
    `openai:MODEL`) replaces every model the recipe names (Recipe.with_teacher)."""
    recipe = load_recipe(Path(recipe_file), data_dir).with_teacher(teacher)
    validate_recipe(recipe)
    target = Path(run_dir) if run_dir else Path("runs") / recipe.name
    return run_recipe(recipe, target, limit, recipe_file, engine=engine, workers=workers, address=address)


def run_recipe(
    recipe: Recipe,
    run_dir: Path,
    limit: int | None = None,
    recipe_file: str | None = None,
    engine: str | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """The flow's body (also callable inside another flow): every stage through `stage_task`; the
    engine is the recipe's `engine:` with `engine`, `workers`, `address` over it."""
    chosen = recipe.engine.overridden(engine, workers, address)
    _engines[str(run_dir)] = make_engine(chosen.name, chosen.workers, chosen.address)
    manifest = Manifest.start(run_dir, recipe.model_dump(mode="json"), recipe_file)
    try:
        steps = [(COLLECT.name, recipe.collect_config(limit)), *recipe.steps()]
        input_dir: Path | None = None
        for index, (name, config) in enumerate(steps, start=1):
            out_dir = stage_dir(run_dir, index, name)
            result = stage_task.with_options(name=out_dir.name)(
                name, config.model_dump(mode="json"), input_dir, out_dir
            )
            manifest.record_stage(result)
            say(stage_line(result))
            input_dir = out_dir / "kept"
    except BaseException as exc:
        manifest.finish("failed", f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):  # the report must never hide the stage's own error
            write_report(run_dir, manifest.data)
        raise
    finally:
        _engines.pop(str(run_dir)).close()
    manifest.finish("succeeded")
    write_report(run_dir, manifest.data)
    create_markdown_artifact(
        key="run-funnel", markdown=funnel_markdown(manifest.data), description="run funnel"
    )
    return manifest.data


def stage_line(result: StepResult) -> str:
    r = result.report
    note = " [dim](cached)[/dim]" if result.cached else ""
    workers = f", {r.workers} workers" if r.workers > 1 and not result.cached else ""
    return (
        f"[green]✓[/green] {result.out_dir.name}: {r.rows_in:,} in → {r.rows_kept:,} kept, "
        f"{r.rows_dropped:,} dropped ({r.seconds:.1f}s{workers}){note}"
    )


def make_engine(name: str = "local", workers: int | None = None, address: str | None = None) -> Engine:
    """An engine by name: `local` (process pool) or `ray` (Ray tasks; `address` "auto", "HOST:PORT",
    or None for a local Ray of `workers` CPUs). Unknown names fail with the choices. Chosen here, not
    in stages/: the engine decides where units run, never what they produce, so it is not part of any
    stage's code version."""
    if name == "local":
        if address:
            raise ValueError(f"an address ({address}) is for the ray engine; the local engine has none")
        return LocalEngine(workers)
    if name == "ray":
        from stages.engine_ray import RayEngine

        return RayEngine(workers, address=address)
    raise ValueError(f"unknown engine {name!r}; choose from: local, ray")
