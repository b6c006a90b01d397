"""The verify stage end to end: quality drops, verdicts, the judge, the worker pool, the CLI, and
agreement with the correctness labels shipped in ../shared/data/generations."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from flows.cli_verify import LABELLED_GENERATION_FIELDS, read_records, to_generation_rows
from stages.llm import LLMError
from stages.store import StageWriter, read_json
from stages.verify import JudgeConfig, VerifyConfig, mathcheck, verify_frames
from stages.verify.pool import Failure, WorkerPool
from tests.conftest import SHARED_DATA, write_jsonl

LONG = "Let me compute step by step. " + " ".join(f"term {i} adds {i * 7 % 13}" for i in range(60))


def _row(**kw) -> dict:
    base = {
        "uid": "u",
        "sample": 0,
        "source": "t",
        "domain": "math",
        "problem": "p",
        "answer": "4",
        "response": LONG + " so \\boxed{4}",
    }
    return base | kw


def _verify(
    tmp_path: Path, rows: list[dict], cfg: VerifyConfig | None = None, judge=None
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    out = tmp_path / "verify"
    with StageWriter(out, "verify") as writer:
        report = writer.finish(
            verify_frames([pl.DataFrame(rows)], cfg or VerifyConfig(workers=1), writer, judge)
        )
    kept = (
        pl.read_parquet(out / "kept")
        if (out / "kept").exists() and any((out / "kept").iterdir())
        else pl.DataFrame()
    )
    dropped = pl.read_parquet(out / "dropped") if any((out / "dropped").iterdir()) else pl.DataFrame()
    return kept, dropped, report


def test_verdicts_and_quality_drops(tmp_path: Path) -> None:
    loop = "I wonder if x is 3. " * 400
    rows = [
        _row(uid="right"),
        _row(uid="wrong", response=LONG + " \\boxed{5}"),
        _row(uid="cut", finish_reason="length"),
        _row(uid="think2", response="<think>a</think><think>b</think> \\boxed{4}" + LONG),
        _row(uid="emptythink", response="<think>  </think>" + LONG + " \\boxed{4}"),
        _row(uid="noanswer", response="I could not decide."),
        _row(uid="loop", response=loop + "\\boxed{4}"),
        _row(uid="mixed", response=LONG + " 然后我们计算这个数字的平方根并且得到结果是四 \\boxed{4}"),
        _row(uid="nogold", answer=None),
    ]
    kept, dropped, report = _verify(tmp_path, rows)
    assert report["rows_in"] == len(rows) == report["rows_kept"] + report["rows_dropped"]
    assert dict(zip(kept["uid"], kept["correct"], strict=True)) == {"right": True, "wrong": False}
    assert set(kept["verifier"]) == {"math"} and set(kept["extracted"]) == {"4", "5"}
    reasons = dict(zip(dropped["uid"], dropped["drop_reason"], strict=True))
    assert reasons == {
        "cut": "truncated",
        "think2": "unbalanced_think",
        "emptythink": "empty_reasoning",
        "noanswer": "no_final_answer",
        "loop": "repetition",
        "mixed": "language_mixing",
        "nogold": "unverifiable",
    }
    evidence = {u: json.loads(d) for u, d in zip(dropped["uid"], dropped["drop_detail"], strict=True)}
    assert evidence["loop"]["top_ngram_repeats"] > 20
    assert evidence["mixed"]["cjk"] >= 20
    assert evidence["think2"] == {"think_open": 2, "think_close": 2}
    assert report["details"]["accuracy_by_source"]["t"]["accuracy"] == 0.5


def test_drop_incorrect_and_length_bounds(tmp_path: Path) -> None:
    cfg = VerifyConfig(workers=1, drop_incorrect=True, quality={"max_chars": 2000})
    rows = [
        _row(uid="right"),
        _row(uid="wrong", response=LONG + " \\boxed{5}"),
        _row(uid="long", response=LONG * 3 + "\\boxed{4}"),
    ]
    kept, dropped, _ = _verify(tmp_path, rows, cfg)
    assert kept["uid"].to_list() == ["right"]
    assert dict(zip(dropped["uid"], dropped["drop_reason"], strict=True)) == {
        "wrong": "incorrect",
        "long": "too_long",
    }


def test_math_timeout_is_a_verdict_not_a_wrong_answer(monkeypatch) -> None:
    def stuck(*args, **kwargs):
        raise mathcheck.TimeoutException("stuck")

    monkeypatch.setattr(mathcheck, "verify", stuck)
    assert mathcheck.check_math("x^2", "x*x")["error"] == "timeout"


def _sleep_or_echo(item: int) -> int:
    if item == 3:
        time.sleep(60)
    if item == 5:
        os._exit(7)
    if item == 6:
        raise ValueError("bad item")
    return item * 10


def test_pool_survives_hung_and_crashed_workers() -> None:
    with WorkerPool(2, chunk_size=3) as pool:
        results = pool.map(_sleep_or_echo, list(range(9)), deadline_s=3)
        assert pool.replaced == 2
        assert pool.map(_sleep_or_echo, [1, 2], deadline_s=3) == [10, 20]  # the replacements work
    assert [r for r in results if not isinstance(r, Failure)] == [0, 10, 20, 40, 70, 80]
    assert [(r.reason) for r in results if isinstance(r, Failure)] == ["timeout", "crash", "error"]
    assert results[3].reason == "timeout" and results[5].reason == "crash" and "bad item" in results[6].detail


def test_judge_must_be_configured(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="no judge model"):
        _verify(tmp_path, [_row()], VerifyConfig(workers=1, judge=JudgeConfig(enabled=True)))


def test_judge_decides_free_form_rows_and_second_opinions(tmp_path: Path) -> None:
    seen: list[str] = []

    def fake_judge(conversations):
        seen.extend(c[0]["content"] for c in conversations)
        return [
            '{"verdict": "correct", "extracted_answer": "QED", "reason": "valid"}'
            if "prove" in c[0]["content"]
            else "no json here"
            for c in conversations
        ]

    rows = [
        _row(uid="proof", answer=None, problem="prove that 2 is prime", response=LONG + " Final answer: QED"),
        _row(uid="garbled", answer=None, problem="p2", response=LONG + " Final answer: maybe"),
        _row(uid="plain"),
    ]
    kept, dropped, _ = _verify(
        tmp_path, rows, VerifyConfig(workers=1, judge=JudgeConfig(enabled=True)), fake_judge
    )
    assert dict(zip(kept["uid"], kept["verifier"], strict=True)) == {"proof": "judge", "plain": "math"}
    assert dict(zip(dropped["uid"], dropped["drop_reason"], strict=True)) == {"garbled": "verifier_error"}
    assert len(seen) == 2 and "prove that 2 is prime" in seen[0]  # rule-checked rows never reach the judge


def _app() -> typer.Typer:
    from flows.cli import app

    return app


def test_cli_explodes_samples_and_reports(tmp_path: Path) -> None:
    data = tmp_path / "gens.jsonl"
    write_jsonl(
        data,
        [
            {
                "q": "1+3?",
                "gt": "4",
                "outs": [LONG + " \\boxed{4}", LONG + " \\boxed{5}", "cut off"],
                "ok": [True, False, True],
            }
        ],
    )
    with data.open("a") as f:
        f.write("{not json\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _app(),
        [
            "verify",
            str(data),
            "--out",
            str(out),
            "--problem-field",
            "q",
            "--gold-field",
            "gt",
            "--response-field",
            "outs",
            "--label-field",
            "ok",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    report = read_json(out / "report.json")
    assert (report["rows_in"], report["rows_kept"], report["rows_dropped"]) == (4, 2, 2)
    assert report["drop_reasons"] == {"no_final_answer": 1, "bad_input": 1}
    assert report["details"]["label_agreement"]["agree"] == 2
    assert "agreement with labels: 2/3" in result.output and str(out / "report.json") in result.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "g.jsonl", [{"problem": "x", "response": "\\boxed{1}"}])
    runner = CliRunner()
    missing = runner.invoke(_app(), ["verify", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    wrong_field = runner.invoke(
        _app(), ["verify", str(data), "--out", str(tmp_path / "o"), "--gold-field", "gt"]
    )
    for result, needle in ((missing, "no such file"), (wrong_field, "no row has field 'gt'")):
        assert result.exit_code == 2
        assert needle in result.output and "Traceback" not in result.output


LABELLED = {
    "qwen25math_math_cot_100_samples.jsonl": "qwen25math_math",
    "skyt1_math_14b_aime24_longcot.jsonl": "skyt1_aime24",
    "skyt1_math_14b_amc23_longcot.jsonl": "skyt1_amc23",
}


@pytest.mark.skipif(not (SHARED_DATA / "generations").is_dir(), reason="../shared/data not present")
def test_agreement_with_shipped_labels(tmp_path: Path) -> None:
    """>= 98% agreement with the labels overall, >= 99% on rows that pass the quality filters.

    The few disagreements are adjudicated in docs/verification.md (label errors, truncated traces,
    garbled multilingual traces that the labels count as correct)."""
    frames = [
        to_generation_rows(
            read_records(SHARED_DATA / "generations" / f)[0], LABELLED_GENERATION_FIELDS, src, None
        )
        for f, src in LABELLED.items()
    ]
    out = tmp_path / "agree"
    with StageWriter(out, "verify") as writer:
        report = writer.finish(verify_frames(frames, VerifyConfig(workers=2), writer))
    label = report["details"]["label_agreement"]
    assert label["rows"] == 870
    assert label["rate"] >= 0.98
    kept = pl.read_parquet(out / "kept")
    kept_agree = (kept["correct"] == kept["label"]).mean()
    assert kept_agree >= 0.99
