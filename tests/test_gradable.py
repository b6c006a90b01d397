"""The `gradable` stage: problems whose gold answer the verifier's rules can grade (DeepScaleR, Skywork)."""

from __future__ import annotations

import polars as pl

from stages.gradable import GradableConfig, gradable
from stages.records import PROBLEM_SCHEMA, conform
from stages.registry import run_stage


def test_what_counts_as_gradable():
    assert all(gradable(a) for a in ["42", "\\frac{3}{4}", "(1,2)", "x^2+1", "odd", "B", "[0, \\infty)"])
    assert not any(gradable(a) for a in ["", "  ", "$$", "see the proof in the appendix"])


def test_stage_drops_ungradable_and_answerless_math_and_passes_code(tmp_path, shared_data):
    omni = pl.read_ndjson(shared_data / "sources/omni_math_rule.jsonl").head(30)
    rows = [
        {"uid": f"o{i}", "problem": p, "answer": a, "domain": "math", "source": "omni"}
        for i, (p, a) in enumerate(zip(omni["problem"], omni["answer"], strict=True))
    ]
    rows += [{"uid": "t", "problem": "Prove it.", "answer": "the statement follows by induction on n", "domain": "math", "source": "x"},
             {"uid": "n", "problem": "No gold.", "answer": None, "domain": "math", "source": "x"},
             {"uid": "c", "problem": "Write f.", "answer": None, "domain": "code", "source": "x"}]  # fmt: skip
    (tmp_path / "in").mkdir()
    conform(pl.DataFrame(rows), PROBLEM_SCHEMA).write_parquet(tmp_path / "in" / "part-00000.parquet")
    report = run_stage("gradable", tmp_path / "in", GradableConfig(), tmp_path / "out")
    dropped = pl.read_parquet(tmp_path / "out" / "dropped")
    reasons = dict(zip(dropped["uid"], dropped["drop_reason"], strict=True))
    assert reasons["t"] == "ungradable" and reasons["n"] == "no_answer" and "c" not in reasons
    assert report.rows_in == 33 == report.rows_kept + report.rows_dropped
    assert report.details.no_answer == 1 and report.details.ungradable == len(report.details.examples) >= 1
    assert report.rows_kept >= 25, "Omni-MATH rule-checkable answers are nearly all gradable"


def test_a_parse_that_times_out_is_ungradable_not_a_crash(monkeypatch):
    """math-verify's TimeoutException is a BaseException: `except Exception` let it through."""
    from math_verify.errors import TimeoutException

    import stages.gradable as module

    seen = {}

    def slow_parse(text, extraction, parsing_timeout):
        seen["timeout"] = parsing_timeout
        raise TimeoutException("parse took too long")

    monkeypatch.setattr(module, "parse", slow_parse)
    assert gradable("x^{2^{2^{2^{2}}}}") is False
    assert seen["timeout"] == module.PARSE_TIMEOUT_S, "the main thread sets the timeout"
