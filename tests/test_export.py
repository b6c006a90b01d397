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


def test_verified_traces_become_think_messages_and_one_rl_row_per_problem(tmp_path):
    rows = pl.DataFrame(
        {
            "uid": ["p1", "p1", "p2"],
            "sample": [0, 1, 0],
            "model": ["teacher"] * 3,
            "source": ["s"] * 3,
            "domain": ["math"] * 3,
            "problem": ["What is 2+3?", "What is 2+3?", "Prove it."],
            "answer": ["5", "5", None],
            "reasoning": ["2 plus 3 is 5.", "Maybe 6.", "Hmm."],
            "response": [r"\boxed{5}", r"\boxed{6}", "Done."],
            "correct": [True, False, None],
            "verifier": ["math", "math", "none"],
            "extracted": ["5", "6", None],
        }
    )
    (tmp_path / "in").mkdir()
    rows.write_parquet(tmp_path / "in" / "part-00000.parquet")
    report = run_stage(export_run, tmp_path / "in", ExportConfig(instructions={}), tmp_path / "out", "export")
    assert (report["rows_kept"], report["rows_dropped"]) == (1, 2)
    assert report["drop_reasons"] == {"incorrect": 2}
    sft = pl.read_parquet(tmp_path / "out" / "sft")
    assert sft["messages"][0].to_list() == [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "<think>\n2 plus 3 is 5.\n</think>\n\n\\boxed{5}"},
    ]
    rl = pl.read_parquet(tmp_path / "out" / "rl")
    assert rl["extra_info"].struct.field("uid").to_list() == ["p1"], "one RL row per problem with a truth"
    assert report["details"]["rl_excluded"] == {"no_ground_truth": 1}
