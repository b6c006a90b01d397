"""Fuzzy-string (OpenThoughts: rapidfuzz ratio >= 95) and digit-stripped exact (Light-R1) decontamination,
on real MATH-500 problems: what each catches and what it must not."""

from __future__ import annotations

import json

import polars as pl
import pytest

from stages.decontam import DecontamConfig
from stages.decontam.fuzzy import FuzzyConfig, digitless_hits, fuzzy_hits
from stages.store import read_shards
from tests.conftest import decontaminated
from tests.test_decontam import _shards


@pytest.fixture(scope="module")
def math500(shared_data) -> list[str]:
    return pl.read_ndjson(shared_data / "benchmarks/math500.jsonl")["problem"].to_list()


def long_item(items: list[str]) -> tuple[int, str]:
    """The first MATH-500 problem of 200+ characters with a number in it."""
    return next((i, t) for i, t in enumerate(items) if len(t) > 200 and any(c.isdigit() for c in t))


def test_fuzzy_flags_copies_with_small_edits_and_not_rephrasings(math500):
    index, item = long_item(math500)
    typo = item[:50] + "zz" + item[50:]  # 2 letters inserted in a 200+ character text: ratio > 99
    rephrased = "Here is a question. " + item[: len(item) // 2]
    hits = fuzzy_hits([item, typo, rephrased, "What is 2+2?"], math500, FuzzyConfig())
    flagged = dict(zip(hits["row"], hits["item"], strict=True))
    assert flagged == {0: index, 1: index}
    assert hits.filter(pl.col("row") == 0)["score"][0] == 1.0
    assert 0.95 <= hits.filter(pl.col("row") == 1)["score"][0] < 1.0
    # a lower threshold catches the half-copy too: the threshold is what decides
    assert 2 in set(fuzzy_hits([rephrased], math500, FuzzyConfig(threshold=60), offset=2)["row"])


def test_digitless_flags_changed_numbers_and_formatting_only(math500):
    index, item = long_item(math500)
    renumbered = "".join("7" if c.isdigit() else c for c in item)
    spaced = item.upper().replace(" ", "  ")
    other = item + " Then double it."
    hits = digitless_hits([renumbered, spaced, other, "123 + 456 = ?"], math500, offset=10)
    assert {(r, i) for r, i in zip(hits["row"], hits["item"], strict=True)} >= {(10, index), (11, index)}
    assert not {12, 13} & set(hits["row"]), "an extra sentence is another text; digits alone never match"
    # Light-R1's key is blind to short texts: "What is 2+2?" and MATH-500's "What is $1^{(2^{235423523})}$?"
    # both reduce to "whatis" (why the recipes run it with the n-gram check, never alone on short rows)
    assert digitless_hits(["What is 2+2?"], math500).height >= 1


def test_stage_drops_by_the_string_methods_with_evidence(tmp_path, shared_data, math500):
    _, item = long_item(math500)
    problems = [
        item[:50] + "zz" + item[50:],
        "".join("3" if c.isdigit() else c for c in item),
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many in May.",
    ]
    config = DecontamConfig(
        methods=["fuzzy", "digitless"], benchmarks=["math500"], benchmark_dir=shared_data / "benchmarks"
    )
    report = decontaminated(_shards(tmp_path, problems), config, tmp_path / "out")
    assert (report["rows_in"], report["rows_dropped"]) == (3, 2)
    dropped = pl.concat(read_shards(tmp_path / "out" / "dropped"))
    methods = {
        p: json.loads(d)["method"] for p, d in zip(dropped["problem"], dropped["drop_detail"], strict=True)
    }
    assert methods[problems[0]] == "fuzzy" and methods[problems[1]] == "digitless"
    assert report["details"]["thresholds"]["fuzzy"] == {"threshold": 95.0}
