"""Export: the SFT problem set and verl's RL layout."""

from __future__ import annotations

import json

import polars as pl

from flows.steps import run_collect, run_stage
from stages.collect import CollectConfig, SourceSpec
from stages.export import ExportConfig
from stages.export import run as export_run
from tests.conftest import write_jsonl


def test_sft_and_rl_sets(tmp_path):
    math = [{"problem": "What is 2+3?", "answer": "5"}, {"problem": "Prove that sqrt 2 is irrational."}]
    code = [{"problem": "Write add(a, b).", "tests": ["assert add(1, 2) == 3"]}]
    sources = [
        SourceSpec(name="m", path=write_jsonl(tmp_path / "m.jsonl", math)),
        SourceSpec(name="c", path=write_jsonl(tmp_path / "c.jsonl", code), domain="code"),
    ]
    run_collect(CollectConfig(sources=sources), tmp_path / "01")
    config = ExportConfig(instructions={"math": "Box it.", "code": ""}, split="train")
    report = run_stage(export_run, tmp_path / "01" / "kept", config, tmp_path / "02", "export")
    assert report["rows_kept"] == 3 and report["details"]["rl_excluded"] == {"no_ground_truth": 1}

    sft = pl.read_parquet(tmp_path / "02" / "sft")
    assert sft.height == 3
    assert sft["messages"][0].to_list() == [{"role": "user", "content": "What is 2+3?\n\nBox it."}]

    rl = pl.read_parquet(tmp_path / "02" / "rl").sort("ability")
    assert rl.columns == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    code_row, math_row = rl.row(0, named=True), rl.row(1, named=True)
    assert math_row["reward_model"] == {"style": "rule", "ground_truth": "5"}
    assert math_row["extra_info"]["split"] == "train" and math_row["data_source"] == "m"
    assert json.loads(code_row["reward_model"]["ground_truth"]) == ["assert add(1, 2) == 3"]
    assert code_row["prompt"][0]["content"] == "Write add(a, b)."
    assert sorted(rl["extra_info"].struct.field("index").to_list()) == [0, 1]
