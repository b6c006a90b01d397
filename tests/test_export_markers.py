"""The OpenThoughts / Sky-T1 marker layout of the SFT assistant turn, next to R1's <think>."""

from __future__ import annotations

import polars as pl
import pytest
from pydantic import ValidationError

from stages.export import ExportConfig
from tests.test_export import export, traces


def test_thought_solution_markers_in_sharegpt(tmp_path):
    rows = traces(4)
    report, out = export(tmp_path, rows, format="sharegpt", markers="thought_solution", tokenizer=None)
    assert report.rows_kept == 4
    turn = pl.read_parquet(out / "sft" / "train").filter(pl.col("uid") == "u002").row(0, named=True)
    gpt = turn["conversations"][1]["value"]
    shortest = rows.filter((pl.col("uid") == "u002") & (pl.col("sample") == 0))["reasoning"][0]
    assert gpt == (
        "<|begin_of_thought|>\n\n" + shortest + "\n\n<|end_of_thought|>\n\n"
        "<|begin_of_solution|>\n\n\\boxed{2}\n\n<|end_of_solution|>"
    )
    assert "<think>" not in gpt


def test_think_stays_the_default_and_unknown_markers_are_refused(tmp_path):
    _, out = export(tmp_path, traces(2), tokenizer=None)
    content = pl.read_parquet(out / "sft" / "train")["messages"][0][-1]["content"]
    assert content.startswith("<think>\n") and "\n</think>\n\n\\boxed{" in content
    with pytest.raises(ValidationError, match="markers"):
        ExportConfig(markers="xml")
