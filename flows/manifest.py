"""runs/<run>/manifest.json: the recipe, package versions, per-stage counts and timings, and status."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from stages.runner import StepResult
from stages.store import read_json, write_json

PACKAGES = ("longcot", "prefect", "polars", "pyarrow", "pydantic", "datasets", "math-verify", "sympy")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


class Manifest:
    """The run's manifest, rewritten atomically after every change so a killed run leaves a true one."""

    def __init__(self, run_dir: Path, data: dict[str, Any]):
        self.path = run_dir / "manifest.json"
        self.data = data

    @classmethod
    def start(cls, run_dir: Path, recipe: dict[str, Any], recipe_file: str | None) -> Manifest:
        run_dir.mkdir(parents=True, exist_ok=True)
        manifest = cls(
            run_dir,
            {
                "run": run_dir.name,
                "status": "running",
                "started_at": now(),
                "finished_at": None,
                "recipe_file": recipe_file,
                "recipe": recipe,
                "versions": versions(),
                "stages": [],
                "error": None,
            },
        )
        manifest.save()
        return manifest

    @classmethod
    def load(cls, run_dir: Path) -> Manifest:
        path = run_dir / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no manifest.json)")
        return cls(run_dir, read_json(path))

    def save(self) -> None:
        write_json(self.path, self.data)

    def record_stage(self, result: StepResult) -> None:
        keys = {"stage", "rows_in", "rows_kept", "rows_dropped", "drop_reasons", "seconds", "workers"}
        entry = {
            "dir": result.out_dir.name,
            **result.report.model_dump(include=keys),
            "cached": result.cached,
        }
        self.data["stages"] = [s for s in self.data["stages"] if s["dir"] != entry["dir"]] + [entry]
        self.save()

    def finish(self, status: str, error: str | None = None) -> None:
        self.data.update(status=status, finished_at=now(), error=error)
        self.save()
