"""The quickstart recipe promises a long-CoT SFT set: checked on its resolved configs, no teacher run."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from flows.recipe import load_recipe
from prompts.templates import load_template
from stages.export import ExportConfig
from stages.registry import run_stage
from tests.test_export import reasoning_traces

RECIPE = Path(__file__).parents[1] / "flows" / "recipes" / "quickstart.yaml"


def quickstart_export() -> ExportConfig:
    configs = [config for kind, config in load_recipe(RECIPE).steps() if kind == "export"]
    assert len(configs) == 1
    return configs[0]


def test_quickstart_export_refuses_empty_and_stub_reasoning(tmp_path):
    config = quickstart_export()
    assert config.require_reasoning, "the quickstart's SFT set is long-CoT"
    assert config.min_reasoning_words > 1, "one echoed word is not reasoning"
    rows = reasoning_traces()  # p1: empty, whitespace, the stub "and", then a real thought
    (tmp_path / "in").mkdir()
    rows.write_parquet(tmp_path / "in" / "part-00000.parquet")
    report = run_stage(
        "export", tmp_path / "in", config.model_copy(update={"tokenizer": None}), tmp_path / "out"
    )
    assert report.drop_reasons == {"empty_reasoning": 4, "incorrect": 1}
    sft = pl.read_parquet(tmp_path / "out" / "sft" / "train")
    assert sft.select("uid", "sample").rows() == [("p1", 3)], "not the stub, though it is shorter"


@pytest.mark.parametrize("name", ["teacher_math", "teacher_code"])
def test_teacher_prompts_show_the_think_block_as_a_template(name):
    """Named in a sentence ("inside <think> and </think> tags") a 0.5B model echoed the words as its
    whole reasoning; with a one-shot example whose reasoning sits in a block of its own lines, 7 of 8
    samples reasoned inside the tags. The example comes before the problem, whole."""
    lines = load_template(name).text.splitlines()
    opened, closed = lines.index("<think>"), lines.index("</think>")
    problem = next(i for i, line in enumerate(lines) if "{problem}" in line)
    assert opened + 1 < closed < problem, "a non-empty example reasoning, then the problem"
