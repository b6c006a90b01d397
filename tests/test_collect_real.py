"""Collection of the real files in ../shared/data: every row accounted for, gold answers extracted."""

from __future__ import annotations

import polars as pl
import pytest

from stages.collect import CollectConfig, SourceSpec
from stages.collect.spec import presets
from tests.conftest import line_count, run_collect


def spec_for(path) -> SourceSpec:
    return SourceSpec(name=path.stem, path=path, preset=path.stem)


def test_all_seven_sources_account_for_every_line(tmp_path, shared_data):
    files = sorted((shared_data / "sources").glob("*.jsonl"))
    assert len(files) == 7
    report = run_collect(CollectConfig(sources=[spec_for(p) for p in files]), tmp_path / "collect")
    assert report["rows_in"] == sum(line_count(p) for p in files)
    assert report["rows_in"] == report["rows_kept"] + report["rows_dropped"]
    per_source = report["details"]["sources"]
    for path in files:
        counts = per_source[path.stem]
        dropped = sum(counts["dropped"].values())
        assert counts["rows"] == line_count(path) == counts["kept"] + dropped
    # GSM8K answers come from '#### N' in every row; DeepScaleR MATH keeps its answer column
    assert per_source["gsm8k_train"]["answer_extracted"] == per_source["gsm8k_train"]["kept"]
    kept = pl.read_parquet(tmp_path / "collect" / "kept")
    gsm = kept.filter(pl.col("source") == "gsm8k_train")
    assert gsm["answer"].str.contains(r"^-?\d+(\.\d+)?$").all(), "GSM8K answers are plain numbers"
    assert not gsm["answer"].str.contains(",").any(), "thousands separators are removed"


@pytest.mark.parametrize("folder", ["sources", "benchmarks"])
def test_every_shared_file_has_a_preset_that_loads(tmp_path, shared_data, folder):
    files = sorted((shared_data / folder).glob("*.jsonl"))
    assert {p.stem for p in files} <= set(presets()), "every shared file needs a preset in data/mappings.yaml"
    report = run_collect(CollectConfig(sources=[spec_for(p) for p in files]), tmp_path / folder)
    for path in files:
        counts = report["details"]["sources"][path.stem]
        assert counts["rows"] == line_count(path)
        assert counts["kept"] > 0.8 * counts["rows"], f"{path.stem}: most rows should be usable"


def test_math_style_answers_come_from_boxed_solutions(tmp_path, shared_data):
    path = shared_data / "benchmarks" / "math_test_5000.jsonl"
    report = run_collect(CollectConfig(sources=[spec_for(path)]), tmp_path / "math")
    kept = pl.read_parquet(tmp_path / "math" / "kept")
    assert report["details"]["sources"]["math_test_5000"]["answer_extracted"] == kept.height == 5000
    first = kept.row(0, named=True)
    assert first["answer"] == "2" and r"\boxed{2}" in first["solution"]


def test_aime_answers_lose_their_padding(tmp_path, shared_data):
    path = shared_data / "benchmarks" / "aime24.jsonl"
    run_collect(CollectConfig(sources=[spec_for(path)]), tmp_path / "aime")
    answers = pl.read_parquet(tmp_path / "aime" / "kept")["answer"]
    assert answers.str.contains(r"^(0|[1-9]\d*)$").all()
