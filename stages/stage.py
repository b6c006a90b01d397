"""The stage contract: what a stage declares, and the report every stage publishes.

A stage is a class with a name, a pydantic config, a pydantic report-details model, and one of two
shapes. The runner (stages/runner.py) owns everything else: reading shards, writing kept/dropped,
the rows-in = kept + dropped check, the report and the atomic publish, the worker pool.

* `MapStage` decides batch by batch (`decide(batch, config, ctx) -> Decision`). Units (input shards,
  or slices of them) run on any worker in any order; their outputs are named by unit, so the result
  is the same whatever the worker count.
* `GlobalStage` needs the whole input to decide (dedup, pass rate, trace selection): a map phase
  `summarize(batch, config, ctx)` makes a compact result per batch (keys, signatures, uids), one
  `reduce(parts, config, ctx)` turns them into a `Plan` (one decision row per input row), and a second
  map phase applies the plan shard by shard (`apply`, generic by default); `finish` (optional) completes
  the report details from the apply phase's tallies once every unit is done.

A stage whose work is not CPU-bound on one batch (a teacher endpoint with its own concurrency, a
verifier with its own process pool) sets `parallel = False`: its units run one after another in the
driver, sharing the state its `open` context yields (a server, a pool).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import polars as pl
from pydantic import BaseModel, ConfigDict

from stages.records import detail_json
from stages.store import ShardWriter, stream_parquet

C = TypeVar("C", bound=BaseModel)


class Details(BaseModel):
    """Base of every stage's report details: strict, so a renamed or misspelt field fails loudly."""

    model_config = ConfigDict(extra="forbid")


class NoDetails(Details):
    """For stages whose counts say everything."""


class StageReport(BaseModel, Generic[C]):
    """report.json of a stage directory. `details` is the stage's own Details model."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    rows_in: int
    rows_kept: int
    rows_dropped: int
    drop_reasons: dict[str, int]
    seconds: float
    cache_key: str | None = None
    code_version: str | None = None
    workers: int = 1
    config: dict[str, Any]
    details: Any

    def typed_details(self, model: type[Details]) -> Details:
        return self.details if isinstance(self.details, model) else model.model_validate(self.details)


@dataclass(frozen=True)
class Unit:
    """A slice of the input: rows [offset, offset + rows) of one Parquet shard; `start` is the global
    index of its first row. Collection's units are sources instead (`source`)."""

    index: int
    path: Path | None = None
    offset: int = 0
    rows: int = 0
    start: int = 0
    source: Any = None


@dataclass
class Decision:
    """What one batch became. `rows_in` overrides the batch height where one input row stands for
    several expected outputs (generation: n samples per problem)."""

    kept: pl.DataFrame
    dropped: pl.DataFrame
    tally: Any = None
    rows_in: int | None = None


@dataclass
class Context:
    """What a stage sees of the runner while it works on one unit."""

    unit: Unit
    state: Any = None
    row: int = 0  # global index (in the stage's input) of the current batch's first row
    workdir: Path | None = None
    outputs: dict[str, ShardWriter] = field(default_factory=dict)
    _output_dir: Path | None = None
    _rows_per_shard: int = 100_000

    def output(self, name: str) -> ShardWriter:
        """An extra shard directory published with the stage (an export's `sft/train`)."""
        if name not in self.outputs:
            assert self._output_dir is not None
            self.outputs[name] = ShardWriter(
                self._output_dir / name, self._rows_per_shard, prefix=f"{self.unit.index:05d}-"
            )
        return self.outputs[name]


@dataclass
class Plan:
    """A global stage's decisions: one row per input row, in input order. `drop_reason` null keeps
    the row; other columns replace (or add) the row's columns where they are not null."""

    decisions: pl.DataFrame
    details: Details
    pending: Future[Any] | None = None
    """Work reduce started in the background (report plots) that must be done before the stage is
    published: the runner waits for it after the apply phase it overlaps."""


class Stage(Generic[C]):
    """What every stage declares. Subclass MapStage or GlobalStage."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    Details: ClassVar[type[Details]] = NoDetails
    parallel: ClassVar[bool] = True
    # what one unit of a parallel stage needs from a cluster engine, in Ray's terms ({"GPU": 1} for an
    # encoder or a vLLM engine, {"CPU": 4}); the local engine runs units on this machine's processes
    resources_per_unit: ClassVar[dict[str, float]] = {}
    batch_rows: ClassVar[int] = 200_000
    # Directories beside the input, relative to it, whose content also decides the result: part of the
    # cache key (pass_rate reads the verifier's dropped rows next to its kept rows: "../dropped").
    extra_inputs: ClassVar[tuple[str, ...]] = ()

    def resources(self, config: C) -> list[Path]:
        """Files besides the input and the code whose content decides the result (benchmarks)."""
        return []

    def check(self, config: C) -> None:
        """Fail fast, before any stage runs, on what the config names but the machine lacks (a
        benchmark, a file, a credential); raise ValueError or OSError with a one-line message."""
        self.resources(config)

    @contextmanager
    def open(self, config: C, input_dir: Path | None) -> Iterator[Any]:
        """State shared by the units one worker runs (an index, a pool, a server); None by default."""
        yield None

    def read(self, unit: Unit, config: C, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
        """The unit's rows in bounded batches: every column, or those of `columns` the shard has."""
        assert unit.path is not None
        schema = pl.read_parquet_schema(unit.path) if columns is not None else {}
        present = [c for c in columns if c in schema] if columns is not None else None
        yield from stream_parquet(unit.path, present, self.batch_rows, unit.offset, unit.rows)


class MapStage(Stage[C]):
    def decide(self, batch: pl.DataFrame, config: C, ctx: Context) -> Decision:
        raise NotImplementedError

    def summarize(self, tallies: list[Any], config: C) -> Details:
        """The report details from the tallies of every batch, in input order."""
        return NoDetails()


class GlobalStage(Stage[C]):
    # The columns map phase 1 reads (None: every column; listed columns the input lacks are skipped).
    # pass_rate summarises (uid, correct): the texts of generation rows are read once, not twice.
    summary_columns: ClassVar[tuple[str, ...] | None] = None

    def summarize(self, batch: pl.DataFrame, config: C, ctx: Context) -> Any:
        """Map phase 1: a compact result per batch (hashes, keys, vectors), returned to the driver."""
        raise NotImplementedError

    def reduce(self, parts: list[Any], config: C, ctx: ReduceContext) -> Plan:
        """Once, in the driver: the parts of every batch (input order) become a Plan."""
        raise NotImplementedError

    def apply(self, batch: pl.DataFrame, plan: pl.DataFrame, config: C, ctx: Context) -> Decision:
        """Map phase 2: split a batch by its slice of the plan (same rows, same order)."""
        return apply_plan(batch, plan)

    def finish(self, details: Details, tallies: list[Any], config: C, out_dir: Path) -> Details:
        """Once, in the driver, after map phase 2: the plan's details completed with the tallies of
        every applied batch (input order). Files written into `out_dir` (the unpublished stage
        directory) are published with the stage (an export's README.md)."""
        return details


Mapper = Callable[[Callable[[Any], Any], list[Any]], list[Any]]


def in_process(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """The `Mapper` of a run without workers."""
    return [fn(item) for item in items]


@dataclass
class ReduceContext:
    """What a global stage's reduce sees: the input (to read selected rows back), a scratch directory,
    and the unpublished stage directory (`out_dir`: what reduce writes there is published with the
    stage, e.g. pass_rate's per-problem `rates/`)."""

    input_dir: Path | None
    workdir: Path
    rows: int
    out_dir: Path
    map: Mapper = in_process
    """fn over items on the run's workers (in this process when it has none), results in order: for
    reduce work that splits into picklable jobs (the near-dup pair check)."""


def apply_plan(batch: pl.DataFrame, plan: pl.DataFrame) -> Decision:
    """The generic apply: plan columns other than drop_reason/drop_detail overwrite the row's where set;
    rows with a drop_reason are dropped with it and their detail (JSON text, "{}" when none)."""
    updates = [c for c in plan.columns if c not in ("drop_reason", "drop_detail")]
    merged = batch
    if updates:
        renamed = plan.select(pl.col(c).alias(f"__plan_{c}") for c in updates)
        merged = (
            pl.concat([batch, renamed], how="horizontal")
            .with_columns(
                (pl.coalesce(f"__plan_{c}", c) if c in batch.columns else pl.col(f"__plan_{c}")).alias(c)
                for c in updates
            )
            .select(*batch.columns, *[c for c in updates if c not in batch.columns])
        )
    reason = plan.get_column("drop_reason")
    detail = (
        plan.get_column("drop_detail")
        if "drop_detail" in plan.columns
        else pl.repeat("{}", plan.height, eager=True)
    )
    dropped = merged.filter(reason.is_not_null()).with_columns(
        drop_reason=reason.filter(reason.is_not_null()),
        drop_detail=detail.filter(reason.is_not_null()).fill_null("{}"),
    )
    return Decision(merged.filter(reason.is_null()), dropped)


def dropped_with(frame: pl.DataFrame, reason: str, **detail: Any) -> pl.DataFrame:
    """`frame` as dropped rows: one reason, the detail fields (literals or expressions) as JSON."""
    return frame.with_columns(pl.lit(reason).alias("drop_reason"), detail_json(**detail).alias("drop_detail"))
