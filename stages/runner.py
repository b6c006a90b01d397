"""The one loop under every command: read shards, call the stage, write kept/dropped, check, publish.

    run_steps(steps, run_dir, engine)     a chain of stages, NN-<name>/ each, the previous kept/ as input
    run_step(step, engine)                one stage into its directory

For each step the runner decides cache hit or run from the stage directory alone: a published
report.json whose `cache_key` equals the key computed now (stage code from the import graph, input
content, config, resources) is a hit, whatever orchestrator database is or is not around.

A run writes into `<stage>.partial/`; units write their own shards (`part-<unit>-<n>.parquet`), so the
output order is the input order whatever the worker count; the rows-in = kept + dropped check runs per
unit and for the stage, and only then is the directory renamed into place.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from pydantic import BaseModel

from stages.codehash import code_version
from stages.engine import Engine, LocalEngine, release_memory
from stages.records import DROP_SCHEMA
from stages.stage import (
    Context,
    Decision,
    GlobalStage,
    MapStage,
    Plan,
    ReduceContext,
    Stage,
    StageReport,
    Unit,
)
from stages.store import (
    DEFAULT_SHARD_ROWS,
    InvariantError,
    ShardWriter,
    count_rows,
    fingerprint,
    shard_paths,
    write_json,
)

PLAN_FILE = "_plan.parquet"
WORK_DIR = "_work"


@dataclass(frozen=True)
class Step:
    """One stage to run: the stage, its validated config, its input shards (None: the stage makes its
    own units, as collection does from sources) and its directory."""

    stage: Stage
    config: BaseModel
    input_dir: Path | None
    out_dir: Path


@dataclass
class StepResult:
    out_dir: Path
    report: StageReport
    cached: bool


Listener = Callable[[StepResult], None]


# ---- cache keys ----------------------------------------------------------------------------------


def files_fingerprint(paths: list[Path]) -> str:
    """Content hash of files (a missing one hashes as its name only)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(str(path).encode())
        if path.is_file():
            with path.open("rb") as f:
                digest.update(hashlib.file_digest(f, "blake2b").digest())
    return digest.hexdigest()


def stage_version(stage: Stage) -> str:
    """The hash of the stage's module and everything it imports (stages.codehash)."""
    return code_version(type(stage).__module__, "stages.runner")


def input_fingerprint(step: Step) -> str:
    """Content hash of the input directory and of the stage's `extra_inputs` beside it."""
    if step.input_dir is None:
        return ""
    extra = [step.input_dir / relative for relative in step.stage.extra_inputs]
    return ":".join(fingerprint(directory) for directory in [step.input_dir, *extra])


def cache_key(step: Step) -> str:
    payload = json.dumps(
        [
            step.stage.name,
            stage_version(step.stage),
            input_fingerprint(step),
            files_fingerprint(step.stage.resources(step.config)),
            step.config.model_dump(mode="json"),
        ],
        sort_keys=True,
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def load_report(stage_dir: Path) -> StageReport | None:
    path = stage_dir / "report.json"
    if not path.is_file():
        return None
    return StageReport.model_validate_json(path.read_text())


def cached_report(step: Step, key: str) -> StageReport | None:
    """The published report if it was made by this very key (a hit), else None."""
    try:
        report = load_report(step.out_dir)
    except ValueError:  # an unreadable report is a miss, never a crash
        return None
    if report is None or report.cache_key != key or not (step.out_dir / "kept").is_dir():
        return None
    return report.model_copy(update={"details": step.stage.Details.model_validate(report.details)})


# ---- units -------------------------------------------------------------------------------------------


def shard_units(input_dir: Path, unit_rows: int) -> list[Unit]:
    """Slices of at most `unit_rows` rows of each input shard, numbered in input order."""
    units: list[Unit] = []
    start = 0
    for path in shard_paths(input_dir):
        total = pq.ParquetFile(path).metadata.num_rows
        for offset in range(0, total, unit_rows):
            rows = min(unit_rows, total - offset)
            units.append(Unit(len(units), path, offset, rows, start))
            start += rows
    return units


def stage_units(step: Step, unit_rows: int) -> list[Unit]:
    make = getattr(step.stage, "units", None)
    if make is not None:
        return make(step.config)
    assert step.input_dir is not None, f"{step.stage.name} needs an input directory"
    return shard_units(step.input_dir, unit_rows)


# ---- one unit (in a worker or in the driver) ---------------------------------------------------------------


@dataclass
class UnitJob:
    stage: Stage
    config: BaseModel
    unit: Unit
    partial: Path
    input_dir: Path | None
    phase: str  # "map" | "summarize" | "apply"


@dataclass
class UnitResult:
    rows_in: int = 0
    kept: int = 0
    dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    tallies: list[Any] = field(default_factory=list)  # one per batch (map) or the parts (summarize)


_worker_states: dict[tuple[str, str], Any] = {}
_worker_exit = ExitStack()
atexit.register(_worker_exit.close)


def _state(job: UnitJob) -> Any:
    """Per worker process: the stage's `open` state, entered once and kept for the process's life."""
    key = (job.stage.name, job.config.model_dump_json())
    if key not in _worker_states:
        _worker_states[key] = _worker_exit.enter_context(job.stage.open(job.config, job.input_dir))
    return _worker_states[key]


def run_unit(job: UnitJob, state: Any = None, use_worker_state: bool = True) -> UnitResult:
    """Run one unit of a phase: its batches through the stage, its shards written."""
    stage, unit = job.stage, job.unit
    ctx = Context(
        unit=unit,
        state=_state(job) if use_worker_state else state,
        workdir=job.partial / WORK_DIR,
        _output_dir=job.partial,
    )
    result = UnitResult()
    ctx.row = unit.start
    if job.phase == "summarize":
        assert isinstance(stage, GlobalStage)
        for batch in stage.read(unit, job.config, stage.summary_columns):
            result.tallies.append(stage.summarize(batch, job.config, ctx))
            ctx.row += batch.height
        return result
    kept = ShardWriter(job.partial / "kept", DEFAULT_SHARD_ROWS, prefix=f"{unit.index:05d}-")
    dropped = ShardWriter(job.partial / "dropped", DEFAULT_SHARD_ROWS, prefix=f"{unit.index:05d}-")
    plans = _plan_slices(job) if job.phase == "apply" else None
    try:
        for batch in stage.read(unit, job.config):
            if plans is not None:
                assert isinstance(stage, GlobalStage)
                decision = stage.apply(batch, next(plans), job.config, ctx)
            else:
                assert isinstance(stage, MapStage)
                decision = stage.decide(batch, job.config, ctx)
            _record(stage.name, batch, decision, kept, dropped, result)
            ctx.row += batch.height
        result.kept, result.dropped = kept.close(), dropped.close()
        for writer in ctx.outputs.values():
            writer.close()
    except BaseException:
        for writer in (kept, dropped, *ctx.outputs.values()):
            writer.abort()
        raise
    if result.rows_in != result.kept + result.dropped:
        raise InvariantError(
            f"stage {stage.name!r}, unit {unit.index}: {result.rows_in} rows in but {result.kept} kept + "
            f"{result.dropped} dropped"
        )
    return result


def _plan_slices(job: UnitJob) -> Iterator[pl.DataFrame]:
    plan = pl.scan_parquet(job.partial / PLAN_FILE)
    start = job.unit.start
    for batch_start in range(0, job.unit.rows, job.stage.batch_rows):
        length = min(job.stage.batch_rows, job.unit.rows - batch_start)
        yield plan.slice(start + batch_start, length).collect()


def _record(
    name: str,
    batch: pl.DataFrame,
    decision: Decision,
    kept: ShardWriter,
    dropped: ShardWriter,
    result: UnitResult,
) -> None:
    """Write one batch's decision and count it; dropped rows must carry a reason and a detail."""
    result.rows_in += batch.height if decision.rows_in is None else decision.rows_in
    if decision.dropped.height:
        missing = [c for c in DROP_SCHEMA if c not in decision.dropped.columns]
        if missing:
            raise ValueError(f"{name}: dropped rows lack {missing}")
        if decision.dropped["drop_reason"].null_count():
            raise ValueError(f"{name}: dropped rows with a null drop_reason")
        result.reasons.update(dict(decision.dropped["drop_reason"].value_counts().iter_rows()))
        dropped.write(decision.dropped)
    kept.write(decision.kept.drop([c for c in DROP_SCHEMA if c in decision.kept.columns]))
    result.tallies.append(decision.tally)


# ---- a stage ------------------------------------------------------------------------------------------------


def run_step(step: Step, engine: Engine | None = None, force: bool = False) -> StepResult:
    """Run one stage into `step.out_dir`, or return its published report when that is a cache hit."""
    key = cache_key(step)
    if not force and (hit := cached_report(step, key)) is not None:
        return StepResult(step.out_dir, hit, cached=True)
    step.stage.check(step.config)  # what the machine lacks fails here, before any work
    engine = engine or LocalEngine(1)
    started = time.perf_counter()
    partial = step.out_dir.with_name(step.out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "kept").mkdir(parents=True)
    (partial / "dropped").mkdir()
    try:
        results, details, workers = _execute(step, engine, partial)
        rows_in = sum(r.rows_in for r in results)
        kept, dropped = sum(r.kept for r in results), sum(r.dropped for r in results)
        if rows_in != kept + dropped:
            raise InvariantError(
                f"stage {step.stage.name!r}: {rows_in} rows in but {kept} kept + {dropped} dropped"
            )
        on_disk = count_rows(partial / "kept"), count_rows(partial / "dropped")
        if on_disk != (kept, dropped):  # a worker wrote where this process cannot see (another disk)
            raise InvariantError(
                f"stage {step.stage.name!r}: the units wrote {kept} kept + {dropped} dropped rows but "
                f"{partial} holds {on_disk[0]} + {on_disk[1]}; every worker must share the run directory"
            )
        reasons: Counter[str] = Counter()
        for r in results:
            reasons.update(r.reasons)
        report = StageReport(
            stage=step.stage.name,
            rows_in=rows_in,
            rows_kept=kept,
            rows_dropped=dropped,
            drop_reasons=dict(reasons.most_common()),
            seconds=round(time.perf_counter() - started, 3),
            cache_key=key,
            code_version=stage_version(step.stage),
            workers=workers,
            config=step.config.model_dump(mode="json"),
            details=details,
        )
        shutil.rmtree(partial / WORK_DIR, ignore_errors=True)
        (partial / PLAN_FILE).unlink(missing_ok=True)
        write_json(partial / "report.json", report.model_dump(mode="json"))
        shutil.rmtree(step.out_dir, ignore_errors=True)
        os.replace(partial, step.out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return StepResult(step.out_dir, report, cached=False)


def _execute(step: Step, engine: Engine, partial: Path) -> tuple[list[UnitResult], Any, int]:
    """The stage's phases; returns the per-unit results of the writing phase, the details, workers used."""
    stage, config = step.stage, step.config
    units = stage_units(step, engine.unit_rows)
    (partial / WORK_DIR).mkdir(exist_ok=True)

    def jobs(phase: str) -> list[UnitJob]:
        return [UnitJob(stage, config, u, partial, step.input_dir, phase) for u in units]

    with ExitStack() as stack:
        if stage.parallel and engine.workers > 1 and len(units) > 1:
            mapper: Callable[[list[UnitJob]], list[UnitResult]] = lambda js: engine.map(  # noqa: E731
                run_unit, js, stage.resources_per_unit
            )
            workers = min(engine.workers, len(units))
        else:  # in this process, one state for every unit
            state = stack.enter_context(stage.open(config, step.input_dir))
            mapper = lambda js: [run_unit(j, state, use_worker_state=False) for j in js]  # noqa: E731
            workers = 1
        if isinstance(stage, GlobalStage):
            parts = [t for r in mapper(jobs("summarize")) for t in r.tallies]
            ctx = ReduceContext(step.input_dir, partial / WORK_DIR, sum(u.rows for u in units), partial)
            if workers > 1:
                ctx.map = engine.map
            plan: Plan = stage.reduce(parts, config, ctx)
            del parts  # not held through apply (1M rows: ~100 MB of keep-policy keys)
            release_memory()  # reduce's freed heap goes back before the workers' apply peaks
            try:
                if plan.decisions.height != ctx.rows:
                    raise InvariantError(
                        f"stage {stage.name!r}: a plan of {plan.decisions.height} rows for {ctx.rows} input rows"
                    )
                plan.decisions.write_parquet(partial / PLAN_FILE)
                results = mapper(jobs("apply"))
            finally:  # reduce's background work writes into the stage: done before it is published or removed
                if plan.pending is not None:
                    wait([plan.pending])
            if plan.pending is not None:
                plan.pending.result()
            details = stage.finish(plan.details, [t for r in results for t in r.tallies], config, partial)
        else:
            assert isinstance(stage, MapStage)
            results = mapper(jobs("map"))
            details = stage.summarize([t for r in results for t in r.tallies], config)
    if not isinstance(details, stage.Details):
        raise TypeError(
            f"stage {stage.name!r} returned {type(details).__name__}, not {stage.Details.__name__}"
        )
    return results, details, workers


# ---- a chain of stages --------------------------------------------------------------------------------------


def stage_dir(run_dir: Path, index: int, name: str) -> Path:
    return run_dir / f"{index:02d}-{name}"


def run_steps(
    steps: list[tuple[Stage, BaseModel]],
    run_dir: Path,
    engine: Engine | None = None,
    input_dir: Path | None = None,
    first_index: int = 1,
    listener: Listener | None = None,
) -> list[StepResult]:
    """Run stages in order into run_dir/NN-<name>/, each on the previous stage's kept rows
    (the first on `input_dir`, or on its own units when None)."""
    results = []
    for index, (stage, config) in enumerate(steps, start=first_index):
        if isinstance(engine, LocalEngine) and not any(s.parallel for s, _ in steps[index - first_index :]):
            engine.close()  # no stage left runs on the pool: its idle workers (~170 MB each) go now
        step = Step(stage, config, input_dir, stage_dir(run_dir, index, stage.name))
        results.append(run_step(step, engine))
        if listener is not None:
            listener(results[-1])
        input_dir = step.out_dir / "kept"
    return results
