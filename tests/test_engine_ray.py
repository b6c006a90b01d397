"""The Ray engine: the same outputs as the local engine on a local Ray of 2 CPUs, per-unit resources
requested from Ray, and a one-line install hint when Ray is missing."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from flows.build import make_engine
from flows.cli import app
from flows.recipe import RecipeError, load_recipe
from stages.collect import CollectConfig, SourceSpec
from stages.engine import LocalEngine
from stages.registry import COLLECT
from stages.runner import run_steps
from stages.stage import Context, Decision, MapStage
from stages.store import InvariantError, count_rows
from tests.test_runner import REPO, assert_same_runs, sources_full_steps


@pytest.fixture(scope="module")
def ray_engine():
    """One local Ray for the module (its start-up is the slow part): 2 CPUs, units of 200 rows."""
    pytest.importorskip("ray", reason='the ray extra is not installed (pip install -e ".[ray]")')
    from stages.engine_ray import RayEngine

    with RayEngine(2, unit_rows=200) as engine:
        yield engine


def test_ray_engine_changes_nothing(shared_data, tmp_path, ray_engine):
    """sources_full.yaml, every stage, local engine on 1 worker and Ray on 2 CPUs, the same small units:
    the same kept and dropped rows in the same order, the same reports apart from timings."""
    steps = sources_full_steps(shared_data, limit=120)
    with LocalEngine(1, unit_rows=200) as one:
        local = run_steps(steps, tmp_path / "local", one)
    on_ray = run_steps(steps, tmp_path / "ray", ray_engine)
    assert max(r.report.workers for r in on_ray) == 2, "the map phases did run as Ray tasks"
    assert_same_runs(local, on_ray, "the local engine and Ray")


def assigned_resources(_: int) -> dict[str, float]:
    """What Ray gave the task running this (module level: Ray workers import it by name)."""
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


def inverse(x: int) -> float:
    return 1 / x


def test_results_in_order_and_resources_requested(ray_engine):
    assert ray_engine.map(inverse, [4, 2, 1, -8]) == [0.25, 0.5, 1.0, -0.125]
    assert ray_engine.map(assigned_resources, [0, 1]) == [{"CPU": 1.0}] * 2
    assert ray_engine.map(assigned_resources, [0], {"CPU": 2}) == [{"CPU": 2.0}]
    with pytest.raises(
        ValueError, match=r"needs \{'GPU': 1\} on one node but .* \(at most \{'GPU': 0\} on a node\)"
    ):
        ray_engine.map(assigned_resources, [0], {"GPU": 1})
    with pytest.raises(ValueError, match=r"at most \{'CPU': 2\.0\} on a node"):
        ray_engine.map(assigned_resources, [0], {"CPU": 3})


def test_a_failing_unit_raises_its_own_error(ray_engine):
    with pytest.raises(ZeroDivisionError):
        ray_engine.map(inverse, [1, 0, 2])


def test_without_ray_one_line_says_how_to_install(shared_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(ImportError, match=r'^the ray engine needs Ray: pip install -e "\.\[ray\]"'):
        make_engine("ray")
    recipe = str(REPO / "flows" / "recipes" / "quickstart.yaml")
    result = CliRunner().invoke(app, ["run", recipe, "--data-dir", str(shared_data), "--engine", "ray"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        'error: the ray engine needs Ray: pip install -e ".[ray]" (or pip install ray)'
    ]


def test_engine_block_in_a_recipe_and_the_command_line_over_it(tmp_path):
    source = {"name": "a", "path": str(tmp_path / "a.jsonl"), "preset": "gsm8k_train"}
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump({"name": "r", "sources": [source], "engine": {"name": "ray", "workers": 3}})
    )
    block = load_recipe(path).engine
    assert (block.name, block.workers, block.address) == ("ray", 3, None)
    chosen = block.overridden(None, None, "10.0.0.1:6379")
    assert (chosen.name, chosen.workers, chosen.address) == ("ray", 3, "10.0.0.1:6379")
    with_address = block.model_copy(update={"address": "auto"})
    assert with_address.overridden("local", 2, None).model_dump() == {
        "name": "local",
        "workers": 2,
        "address": None,  # the recipe's Ray address does not follow a switch to the local engine
    }
    path.write_text(yaml.safe_dump({"name": "r", "sources": [source], "engine": {"name": "spark"}}))
    with pytest.raises(RecipeError, match=r"engine\.name"):
        load_recipe(path)
    with pytest.raises(ValueError, match="for the ray engine"):
        make_engine("local", address="auto")


def test_make_engine_joins_a_running_ray(ray_engine):
    """With Ray already up (here the fixture's), `make_engine("ray")` uses it and leaves it running."""
    import ray

    engine = make_engine("ray")
    assert engine.workers == 2
    engine.close()
    assert ray.is_initialized(), "an engine closes only the Ray it started"


@dataclass
class OtherDiskEngine:
    """Runs each unit as a node would whose run directory is a different disk mounted at the same path."""

    elsewhere: Path
    workers: int = 2
    unit_rows: int = 200

    def map(self, fn, items, resources=None):
        return [fn(replace(job, partial=self.elsewhere)) for job in items]

    def close(self) -> None:
        pass


def test_shards_the_driver_cannot_see_fail_the_stage(shared_data, tmp_path):
    """Units that report rows their shards do not hold where the driver looks: no publish, a clear error."""
    path = shared_data / "sources" / "gsm8k_train.jsonl"
    sources = [SourceSpec(name=n, path=path, preset="gsm8k_train", limit=50) for n in ("a", "b")]
    (tmp_path / "elsewhere" / "kept").mkdir(parents=True)
    (tmp_path / "elsewhere" / "dropped").mkdir()
    engine = OtherDiskEngine(tmp_path / "elsewhere")
    with pytest.raises(InvariantError, match=r"100 kept \+ 0 dropped rows but .* holds 0 \+ 0; every worker"):
        run_steps([(COLLECT, CollectConfig(sources=sources))], tmp_path / "run", engine)
    assert count_rows(tmp_path / "elsewhere" / "kept") == 100, "the units did write, elsewhere"
    assert not (tmp_path / "run" / "01-collect").exists(), "nothing published"


class OpensConfig(BaseModel):
    marks: Path  # each `open` leaves a file here named by its process


class CountsOpens(MapStage[OpensConfig]):
    """Keeps every row; its `open` marks which process entered it."""

    name = "counts_opens"
    Config = OpensConfig

    @contextmanager
    def open(self, config: OpensConfig, input_dir: Path | None) -> Iterator[int]:
        (config.marks / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        yield os.getpid()

    def decide(self, batch: pl.DataFrame, config: OpensConfig, ctx: Context) -> Decision:
        assert ctx.state == os.getpid(), "a unit sees the state its own process opened"
        return Decision(batch, batch.clear())


def test_open_state_once_per_ray_worker(tmp_path, ray_engine):
    """Units on Ray share their worker process's `open` state, as on the local pool: 4 units, at most
    2 worker processes, one `open` each."""
    (tmp_path / "in").mkdir()
    pl.DataFrame({"problem": [f"p{i}" for i in range(800)]}).write_parquet(
        tmp_path / "in" / "part-00000.parquet"
    )
    (tmp_path / "marks").mkdir()
    step = (CountsOpens(), OpensConfig(marks=tmp_path / "marks"))
    [result] = run_steps([step], tmp_path / "run", ray_engine, input_dir=tmp_path / "in")
    assert result.report.rows_kept == 800 and result.report.workers == 2
    pids = [p.name.split("-")[0] for p in (tmp_path / "marks").iterdir()]
    assert len(pids) == len(set(pids)), "one open per process"
    assert 1 <= len(pids) <= 2 < 4, "the 4 units reused their workers' state"
    assert str(os.getpid()) not in pids, "the units ran in Ray workers, not in the driver"
