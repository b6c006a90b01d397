"""The runner's invariant: a stage that loses or invents rows fails and publishes nothing; dropped rows
carry a reason and evidence; a crash leaves no partial output."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest
from pydantic import BaseModel, ConfigDict

from stages.engine import LocalEngine
from stages.records import detail_json
from stages.runner import Step, run_step
from stages.stage import Context, Decision, Details, GlobalStage, MapStage, Plan, ReduceContext
from stages.store import InvariantError, count_rows, fingerprint, read_shards, take_rows

FRAME = pl.DataFrame({"uid": ["a", "b", "c"], "problem": ["x", "y", "z"]})


class Mode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str


class Toy(MapStage[Mode]):
    """Keeps the first two rows of a batch and does to the third what `mode` says."""

    name, Config = "toy", Mode

    def decide(self, batch: pl.DataFrame, config: Mode, ctx: Context) -> Decision:
        if config.mode == "crash":
            raise RuntimeError("killed")
        rest = batch.tail(1)
        if config.mode == "drop":
            rest = rest.with_columns(
                pl.lit("bad").alias("drop_reason"), detail_json(why="test").alias("drop_detail")
            )
        elif config.mode == "no_reason":
            rest = rest.with_columns(
                pl.lit(None, pl.String).alias("drop_reason"), pl.lit("{}").alias("drop_detail")
            )
        elif config.mode == "lose":
            rest = rest.head(0).with_columns(
                pl.lit("x").alias("drop_reason"), pl.lit("{}").alias("drop_detail")
            )
        return Decision(batch.head(2), rest)


@pytest.fixture
def shards(tmp_path):
    (tmp_path / "in").mkdir()
    FRAME.write_parquet(tmp_path / "in" / "part-00000.parquet")
    FRAME.write_parquet(tmp_path / "in" / "part-00001.parquet")
    return tmp_path / "in"


def run(shards, tmp_path, mode: str, workers: int = 1):
    with LocalEngine(workers) as engine:
        return run_step(Step(Toy(), Mode(mode=mode), shards, tmp_path / "02-toy"), engine)


def test_kept_plus_dropped_publishes_shards_and_report(shards, tmp_path):
    result = run(shards, tmp_path, "drop")
    report = result.report
    assert (report.rows_in, report.rows_kept, report.rows_dropped) == (6, 4, 2)
    assert report.drop_reasons == {"bad": 2}
    assert count_rows(tmp_path / "02-toy" / "kept") == 4
    assert [p.name for p in sorted((tmp_path / "02-toy" / "kept").iterdir())] == [
        "part-00000-00000.parquet",
        "part-00001-00000.parquet",
    ], "shards named by unit, in input order"
    assert (
        pl.concat(read_shards(tmp_path / "02-toy" / "dropped"))["drop_detail"].to_list()
        == ['{"why":"test"}'] * 2
    )


@pytest.mark.parametrize(
    ("mode", "error"),
    [("lose", "3 rows in but 2 kept"), ("no_reason", "null drop_reason"), ("crash", "killed")],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_stage_fails_and_publishes_nothing(shards, tmp_path, mode, error, workers):
    with pytest.raises((InvariantError, ValueError, RuntimeError), match=error):
        run(shards, tmp_path, mode, workers)
    assert not (tmp_path / "02-toy").exists()
    assert not (tmp_path / "02-toy.partial").exists()


def test_fingerprint_follows_content_not_time(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        FRAME.write_parquet(tmp_path / name / "part-00000.parquet")
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b")
    FRAME.head(2).write_parquet(tmp_path / "b" / "part-00000.parquet")
    assert fingerprint(tmp_path / "a") != fingerprint(tmp_path / "b")


def test_take_rows_reads_chosen_rows_across_shards_and_row_groups(tmp_path):
    """Rows by global index, in the order asked (repeats kept), from shards of several row groups;
    no rows asked still gives the columns (a stage selecting from an empty result must not fail)."""
    frame = pl.DataFrame({"uid": [f"u{i}" for i in range(50)], "n": list(range(50))})
    frame.head(30).write_parquet(tmp_path / "part-00000.parquet", row_group_size=7)
    frame.tail(20).write_parquet(tmp_path / "part-00001.parquet", row_group_size=7)
    rows = np.array([49, 3, 29, 30, 3])
    taken = take_rows(tmp_path, rows, ["uid", "n"])
    assert taken["idx"].to_list() == rows.tolist()
    assert taken["n"].to_list() == rows.tolist()
    assert taken["uid"].to_list() == [f"u{i}" for i in rows]
    empty = take_rows(tmp_path, np.array([], dtype=np.int64), ["uid", "n"])
    assert empty.height == 0 and empty.schema == {"idx": pl.Int64, "uid": pl.String, "n": pl.Int64}


class Background(GlobalStage[Mode]):
    """Keeps every row; reduce leaves a slow background write into the stage (like the dedup plots)."""

    name, Config, Details = "background", Mode, Details

    def summarize(self, batch: pl.DataFrame, config: Mode, ctx: Context) -> int:
        return batch.height

    def reduce(self, parts: list[int], config: Mode, ctx: ReduceContext) -> Plan:
        def write() -> None:
            time.sleep(0.3)
            ctx.out_dir.mkdir(parents=True, exist_ok=True)  # would bring a removed stage back
            (ctx.out_dir / "figure.png").write_bytes(b"png")

        pending = ThreadPoolExecutor(1).submit(write)
        return Plan(
            pl.DataFrame({"drop_reason": [None] * sum(parts)}, schema={"drop_reason": pl.String}),
            Details(),
            pending,
        )

    def apply(self, batch: pl.DataFrame, plan: pl.DataFrame, config: Mode, ctx: Context) -> Decision:
        if config.mode == "crash":
            raise RuntimeError("killed")
        return super().apply(batch, plan, config, ctx)


@pytest.mark.parametrize("mode", ["keep", "crash"])
def test_background_work_of_reduce_is_done_before_the_stage_is_published_or_removed(shards, tmp_path, mode):
    out = tmp_path / "03-background"
    if mode == "crash":
        with pytest.raises(RuntimeError, match="killed"):
            run_step(Step(Background(), Mode(mode=mode), shards, out))
        time.sleep(0.5)  # a write left running would land now
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    else:
        run_step(Step(Background(), Mode(mode=mode), shards, out))
        assert (out / "figure.png").read_bytes() == b"png" and count_rows(out / "kept") == 6
