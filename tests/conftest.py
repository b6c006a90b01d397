"""Shared fixtures. Prefect runs in its local ephemeral mode with a throwaway PREFECT_HOME."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest

if "PREFECT_HOME" not in os.environ:  # made only when needed, removed at exit (workers inherit it)
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="longcot-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The first start of the ephemeral API server migrates a fresh database: slow on a busy 2-core box.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# Prefect's SQLite database cannot create missing parent directories of PREFECT_HOME
Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LONGCOT_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "sources").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def run_collect(config, out_dir: Path) -> dict:
    """Collection into `out_dir` through the runner; the report as JSON data."""
    from stages.registry import run_stage

    return run_stage("collect", None, config, out_dir, force=True).model_dump(mode="json")


def collect_files(paths: list[Path], fields, out_dir: Path, domain: str = "math") -> dict:
    from stages.collect import file_sources

    return run_collect(file_sources(paths, fields, domain), out_dir)


def decontaminated(input_dir: Path, config, out_dir: Path, judge=None) -> dict:
    """The decontaminate stage on `input_dir` (a fake `judge` in place of the configured one); its report."""
    from stages.decontam import Decontaminate
    from stages.registry import run_stage

    return run_stage(Decontaminate(judge), input_dir, config, out_dir, force=True).model_dump(mode="json")


def shared_texts(data_dir: Path) -> pl.Series:
    """Every string value of every JSONL file under `data_dir` (sources, benchmarks, generations): the
    real texts that a text transformation is checked on."""
    values = []
    for path in sorted(data_dir.rglob("*.jsonl")):
        frame = pl.read_ndjson(path, infer_schema_length=None)
        values += [
            frame.get_column(c).drop_nulls() for c, dtype in frame.schema.items() if dtype == pl.String
        ]
    return pl.concat(values).rename("text")
