"""The Prefect flow: `build_dataset(recipe)` runs collect, then each recipe step, one task per stage.

Caching: a stage's cache key is (stage kind, stage code version, input fingerprint, config, output
dir). An unchanged stage is a Prefect cache hit; its published directory is checked before it is
trusted, so a deleted or edited stage directory re-runs instead of being believed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from flows.html_report import funnel_markdown, write_report
from flows.manifest import Manifest
from flows.recipe import Recipe, check_inputs
from flows.registry import COLLECT, STAGES
from flows.steps import run_collect, run_stage, stage_dir
from stages.collect import CollectConfig
from stages.store import fingerprint, load_report

StageListener = Callable[[str, dict[str, Any], bool], None]


def files_fingerprint(paths: list[Path]) -> str:
    """Content hash of files (a missing one hashes as its name only)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(str(path).encode())
        if path.is_file():
            with path.open("rb") as f:
                digest.update(hashlib.file_digest(f, "blake2b").digest())
    return digest.hexdigest()


def source_fingerprint(config: CollectConfig) -> str:
    """Content hash of the local source files (Hub sources are identified by the config itself)."""
    return files_fingerprint([s.path for s in config.sources if s.path is not None])


def cache_key(kind: str, version: str, input_fp: str, config: BaseModel, out_dir: Path) -> str:
    payload = json.dumps(
        [kind, version, input_fp, config.model_dump(mode="json"), str(out_dir.resolve())], sort_keys=True
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _key_fn(context: Any, parameters: dict[str, Any]) -> str:
    return parameters["key"]


@task(cache_key_fn=_key_fn, persist_result=True, result_serializer="json")
def stage_task(
    kind: str, key: str, config: BaseModel, input_dir: Path | None, out_dir: Path
) -> dict[str, Any]:
    """Run one stage; `key` is its cache key and is stored in the stage report."""
    if kind == COLLECT.name:
        assert isinstance(config, CollectConfig)
        report = run_collect(config, out_dir, cache_key=key)
    else:
        assert input_dir is not None
        report = run_stage(STAGES[kind].run, input_dir, config, out_dir, kind, cache_key=key)
    _publish_artifacts(kind, report)
    summary = STAGES[kind].markdown if kind in STAGES else None
    if summary is not None:
        create_markdown_artifact(
            key=f"{kind.replace('_', '-')}-details", markdown=summary(report["details"]), description=kind
        )
    return report


def _publish_artifacts(kind: str, report: dict[str, Any]) -> None:
    """The stage report as Prefect artifacts, visible in the UI when a server is used."""
    slug = kind.replace("_", "-")
    create_table_artifact(
        key=f"{slug}-drops",
        table=[{"reason": r, "rows": n} for r, n in report["drop_reasons"].items()]
        or [{"reason": "-", "rows": 0}],
        description=f"{kind}: dropped rows by reason",
    )
    create_markdown_artifact(
        key=f"{slug}-report",
        markdown=(
            f"### {kind}\n\n| rows in | kept | dropped | seconds |\n|---|---|---|---|\n"
            f"| {report['rows_in']} | {report['rows_kept']} | {report['rows_dropped']} | {report['seconds']} |\n"
        ),
        description=f"{kind} stage report",
    )


def _run_cached(
    kind: str, config: BaseModel, input_dir: Path | None, input_fp: str, out_dir: Path
) -> tuple[dict[str, Any], bool]:
    """Run a stage through Prefect's cache; a cache hit whose directory is gone or stale re-runs."""
    stage = COLLECT if kind == COLLECT.name else STAGES[kind]
    if stage.resources is not None:
        input_fp += files_fingerprint(stage.resources(config))
    key = cache_key(kind, stage.version, input_fp, config, out_dir)
    named = stage_task.with_options(name=out_dir.name)
    state = named(kind, key, config, input_dir, out_dir, return_state=True)
    report = state.result()
    on_disk = load_report(out_dir)
    cached = state.name == "Cached"
    if cached and (on_disk is None or on_disk.get("cache_key") != key):
        state = named.with_options(refresh_cache=True)(
            kind, key, config, input_dir, out_dir, return_state=True
        )
        report, cached = state.result(), False
    return report, cached


@flow(name="build-dataset", cache_result_in_memory=False, validate_parameters=False)
def build_dataset(
    recipe: Recipe,
    run_dir: Path,
    limit: int | None = None,
    recipe_file: str | None = None,
    on_stage: StageListener | None = None,
) -> dict[str, Any]:
    """Collect the recipe's sources, run its steps in order, and return the manifest."""
    check_inputs(recipe)
    manifest = Manifest.start(run_dir, recipe.model_dump(mode="json"), recipe_file)
    try:
        collect_config = recipe.collect_config(limit)
        out_dir = stage_dir(run_dir, 1, COLLECT.name)
        report, cached = _run_cached(
            COLLECT.name, collect_config, None, source_fingerprint(collect_config), out_dir
        )
        _record(manifest, out_dir, report, cached, on_stage)
        for index, (kind, config) in enumerate(recipe.steps(), start=2):
            input_dir = out_dir / "kept"
            out_dir = stage_dir(run_dir, index, kind)
            report, cached = _run_cached(kind, config, input_dir, fingerprint(input_dir), out_dir)
            _record(manifest, out_dir, report, cached, on_stage)
    except BaseException as exc:
        manifest.finish("failed", f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):  # the report must never hide the stage's own error
            write_report(run_dir, manifest.data)
        raise
    manifest.finish("succeeded")
    write_report(run_dir, manifest.data)
    create_markdown_artifact(
        key="run-funnel", markdown=funnel_markdown(manifest.data), description="run funnel"
    )
    return manifest.data


def _record(
    manifest: Manifest, out_dir: Path, report: dict, cached: bool, on_stage: StageListener | None
) -> None:
    manifest.record_stage(out_dir, report, cached)
    if on_stage is not None:
        on_stage(out_dir.name, report, cached)
