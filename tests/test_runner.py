"""The runner: the same results whatever the worker count; cache hits decided by the run directory
with keys that cover all the code a stage imports."""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.recipe import load_recipe
from stages.codehash import closure, code_version
from stages.engine import MALLOC_ARENAS, LocalEngine, _Releasing
from stages.registry import COLLECT, STAGES
from stages.runner import StepResult, run_steps
from stages.store import read_shards
from tests.arenas_probe import arenas_after_threads

REPO = Path(__file__).resolve().parents[1]
# what differs from run to run without changing the result: timings, workers, whether an index came from its cache
TIMING_KEYS = {"seconds", "workers", "cached"}


def rows(directory: Path) -> pl.DataFrame:
    frames = list(read_shards(directory))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def without_timings(value):
    """A report with its timings and cache states (which differ from run to run) left out."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_worker_count_changes_nothing(shared_data, tmp_path):
    """sources_full.yaml, every stage, on 1 worker and on 4 with small units: the same kept and dropped
    rows in the same order, and the same reports apart from timings."""
    steps = sources_full_steps(shared_data, limit=120)
    with LocalEngine(1, unit_rows=200) as one, LocalEngine(4, unit_rows=200) as four:
        serial = run_steps(steps, tmp_path / "w1", one)
        parallel = run_steps(steps, tmp_path / "w4", four)
    assert max(r.report.workers for r in parallel) == 4, "the map phases did run on the pool"
    assert_same_runs(serial, parallel, "1 and 4 workers")


class _Node:
    pass


def test_a_workers_release_collects_each_units_cycles_before_freezing():
    """A pool worker collects after every unit and then freezes the survivors (so the next
    collection skips them): a cycle a unit leaves behind is collected, also after earlier freezes,
    never frozen into a leak."""
    left: list[weakref.ref] = []

    def unit(_: int) -> None:
        node = _Node()
        node.self = node  # a cycle: only the collector frees it
        left.append(weakref.ref(node))

    try:
        for item in range(3):
            _Releasing(unit)(item)
            assert left[-1]() is None, f"unit {item}'s cycle outlived the release"
        assert gc.get_freeze_count() > 0, "survivors are frozen"
    finally:
        gc.unfreeze()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")
def test_pool_workers_keep_to_a_few_malloc_arenas(monkeypatch):
    """A worker's thread pools would each get a glibc arena (heaps malloc_trim cannot give back);
    the pool's workers are limited to MALLOC_ARENAS. Without the limit the same probe sees more."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)  # the workers inherit it; it would win
    env = dict(os.environ)
    free = subprocess.run(
        [sys.executable, "-m", "tests.arenas_probe"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(free.stdout) > MALLOC_ARENAS, "the probe sees one arena per thread when nothing limits them"
    with LocalEngine(2) as engine:
        counts = engine.map(arenas_after_threads, range(2))
    assert max(counts) <= MALLOC_ARENAS


def test_pool_is_closed_once_no_stage_left_runs_on_it(shared_data, tmp_path, monkeypatch):
    """collect (on the pool) then decontaminate (in the driver, last): the idle workers are gone
    before decontamination; with export (on the pool) still to come they stay."""
    steps = {stage.name: (stage, config) for stage, config in sources_full_steps(shared_data, limit=20)}
    decontaminate = steps["decontaminate"][0]
    alive: list[int] = []
    reduce = type(decontaminate).reduce

    def counting(self, *args, **kwargs):
        alive.append(len(multiprocessing.active_children()))
        return reduce(self, *args, **kwargs)

    monkeypatch.setattr(type(decontaminate), "reduce", counting)
    with LocalEngine(2) as engine:
        run_steps([steps["collect"], steps["decontaminate"]], tmp_path / "last", engine)
        run_steps([steps["collect"], steps["decontaminate"], steps["export"]], tmp_path / "more", engine)
    assert alive[0] == 0, "no worker waits through a driver-only last stage"
    assert alive[1] == 2, "the pool stays for a later stage that runs on it"


def sources_full_steps(shared_data: Path, limit: int) -> list:
    """sources_full.yaml's stages, collection limited to `limit` rows per source."""
    recipe = load_recipe(REPO / "flows" / "recipes" / "sources_full.yaml", data_dir=str(shared_data))
    return [(COLLECT, recipe.collect_config(limit=limit)), *[(STAGES[n], c) for n, c in recipe.steps()]]


def assert_same_runs(serial: list[StepResult], parallel: list[StepResult], label: str) -> None:
    """The same stages, kept and dropped rows in the same order, reports equal apart from timings."""
    assert [r.out_dir.name for r in serial] == [r.out_dir.name for r in parallel]
    assert parallel[1].report.rows_in > 200 * 3, "several units per stage"
    for a, b in zip(serial, parallel, strict=True):
        for part in ("kept", "dropped"):
            left, right = rows(a.out_dir / part), rows(b.out_dir / part)
            assert left.equals(right), f"{a.out_dir.name}/{part} differs between {label}"
        assert without_timings(a.report.model_dump(mode="json")) == without_timings(
            b.report.model_dump(mode="json")
        )


def test_a_version_covers_every_module_a_stage_imports(tmp_path):
    tree = copy_project(tmp_path)
    files = {p.relative_to(tree).as_posix() for p in closure(["stages.dedup.exact"], tree)}
    # exact -> policy -> records: the keep policy and the drop-detail helper are the stage's code too
    assert {"stages/dedup/exact.py", "stages/dedup/policy.py", "stages/records.py"} <= files
    assert "stages/dedup/minhash.py" not in files, "a sibling stage is not part of this one"
    prompts = {p.relative_to(tree).as_posix() for p in closure(["stages.generate.stage"], tree)}
    assert "prompts/teacher_math.md" in prompts, "templates read by imported modules count"
    before = code_version("stages.dedup.minhash", root=tree)
    policy = tree / "stages" / "dedup" / "policy.py"
    policy.write_text(policy.read_text() + "\n# a change two imports away from minhash\n")
    code_version.cache_clear()
    assert code_version("stages.dedup.minhash", root=tree) != before


def copy_project(root: Path) -> Path:
    tree = root / "project"
    for name in ("stages", "flows", "prompts", "data"):
        shutil.copytree(REPO / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def longcot(tree: Path, prefect_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PREFECT_HOME": str(prefect_home)}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def stage_states(run_dir: Path) -> dict[str, bool]:
    manifest = yaml.safe_load((run_dir / "manifest.json").read_text())
    return {s["dir"]: s["cached"] for s in manifest["stages"]}


@pytest.mark.slow
def test_stale_code_reruns_and_prefect_home_does_not_matter(shared_data, tmp_path):
    """Edit a helper two imports away from a stage: that stage and those after it re-run, earlier ones
    stay cached. A fresh PREFECT_HOME over a finished run re-runs nothing."""
    tree = copy_project(tmp_path)
    source = shared_data / "sources" / "deepscaler_train_math.jsonl"
    recipe = {
        "name": "stale",
        "sources": [
            {"name": "a", "path": str(source), "preset": "deepscaler_train_math", "limit": 200},
            {"name": "b", "path": str(source), "preset": "deepscaler_train_math", "limit": 60},
        ],
        "stages": [{"stage": "minhash_dedup"}, {"stage": "export"}],
    }
    (tree / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    first = longcot(tree, tmp_path / "home1", "run", "recipe.yaml", "--run-dir", str(run_dir))
    assert first.returncode == 0, first.stdout + first.stderr
    kept_before = rows(run_dir / "02-minhash_dedup" / "kept")
    assert set(kept_before["source"]) == {"a"}, "the earlier copy of each repeated problem is kept"

    fresh = longcot(tree, tmp_path / "home2", "run", "recipe.yaml", "--run-dir", str(run_dir))
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert all(stage_states(run_dir).values()), "a new PREFECT_HOME finds every stage in the run directory"

    # the keep policy lives in stages/dedup/policy.py, imported by clusters.py, imported by minhash.py
    policy = tree / "stages" / "dedup" / "policy.py"
    text = policy.read_text()
    assert "descending=[True, True, True, False]" in text
    policy.write_text(
        text.replace("descending=[True, True, True, False]", "descending=[True, True, True, True]")
    )
    edited = longcot(tree, tmp_path / "home2", "run", "recipe.yaml", "--run-dir", str(run_dir))
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert stage_states(run_dir) == {"01-collect": True, "02-minhash_dedup": False, "03-export": False}
    kept_after = rows(run_dir / "02-minhash_dedup" / "kept")
    assert "b" in set(kept_after["source"]), "the new policy (latest row wins) took effect"
