"""The run store's invariant: a stage that loses or invents rows fails and publishes nothing."""

from __future__ import annotations

import polars as pl
import pytest

from stages.records import detail_json
from stages.store import InvariantError, StageWriter, count_rows, fingerprint, read_shards

FRAME = pl.DataFrame({"uid": ["a", "b", "c"], "problem": ["x", "y", "z"]})


def test_a_stage_that_loses_a_row_fails_and_publishes_nothing(tmp_path):
    stage_dir = tmp_path / "02-lossy"
    with pytest.raises(InvariantError, match="3 rows in but 2 kept"), StageWriter(stage_dir, "lossy") as out:
        out.count_in(FRAME.height)
        out.keep(FRAME.head(2))
        out.finish()
    assert not stage_dir.exists()
    assert not stage_dir.with_name("02-lossy.partial").exists()


def test_kept_plus_dropped_publishes_shards_and_report(tmp_path):
    stage_dir = tmp_path / "02-ok"
    with StageWriter(stage_dir, "ok", rows_per_shard=2) as out:
        out.count_in(FRAME.height)
        out.keep(FRAME.head(2))
        out.drop(
            FRAME.tail(1).with_columns(
                pl.lit("bad").alias("drop_reason"), detail_json(why="test").alias("drop_detail")
            )
        )
        report = out.finish({"note": 1})
    assert (report["rows_in"], report["rows_kept"], report["rows_dropped"]) == (3, 2, 1)
    assert report["drop_reasons"] == {"bad": 1}
    assert count_rows(stage_dir / "kept") == 2 and count_rows(stage_dir / "dropped") == 1
    assert pl.concat(read_shards(stage_dir / "dropped"))["drop_detail"].to_list() == ['{"why":"test"}']


def test_dropped_rows_need_a_reason(tmp_path):
    with StageWriter(tmp_path / "s", "s") as out:
        with pytest.raises(ValueError, match="lack"):
            out.drop(FRAME)
        with pytest.raises(ValueError, match="null drop_reason"):
            out.drop(
                FRAME.with_columns(
                    pl.lit(None, pl.String).alias("drop_reason"), pl.lit("{}").alias("drop_detail")
                )
            )


def test_an_exception_inside_the_stage_leaves_no_partial_output(tmp_path):
    stage_dir = tmp_path / "s"
    with pytest.raises(RuntimeError), StageWriter(stage_dir, "s") as out:
        out.count_in(3)
        out.keep(FRAME)
        raise RuntimeError("killed")
    assert not stage_dir.exists() and not stage_dir.with_name("s.partial").exists()


def test_fingerprint_follows_content_not_time(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        FRAME.write_parquet(tmp_path / name / "part-00000.parquet")
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b")
    FRAME.head(2).write_parquet(tmp_path / "b" / "part-00000.parquet")
    assert fingerprint(tmp_path / "a") != fingerprint(tmp_path / "b")
