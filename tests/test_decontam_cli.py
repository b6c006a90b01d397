"""`longcot decontaminate` and `longcot benchmarks` through typer's CliRunner on an app built with register()."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from flows.cli_decontam import register
from tests.conftest import write_jsonl

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    return application


def _aime24(shared_data) -> list[dict]:
    return [
        json.loads(line)
        for line in (shared_data / "benchmarks" / "aime24.jsonl").read_text().split("\n")
        if line
    ]


def _audit(app, inputs: list, out, benchmarks: str, shared_data, columns: int = 160):
    """`longcot decontaminate INPUTS --out OUT --benchmarks B --benchmark-dir ../shared/data/benchmarks`."""
    args = ["decontaminate", *map(str, inputs), "--out", str(out), "--benchmarks", benchmarks]
    args += ["--benchmark-dir", str(shared_data / "benchmarks")]
    return runner.invoke(app, args, env={"COLUMNS": str(columns)})


def test_audit_of_a_chat_sft_set_picks_the_user_turn(app, shared_data, tmp_path):
    aime = _aime24(shared_data)
    clean = "A frog jumps 3 units right then 4 units up. How far is it from the start?"
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Think step by step."},
                {"role": "user", "content": aime[3]["problem"]},
                {"role": "assistant", "content": "<think>...</think> 204"},
            ]
        },
        {"messages": [{"role": "user", "content": clean}, {"role": "assistant", "content": "5"}]},
    ]
    sft = write_jsonl(tmp_path / "sft.jsonl", rows)
    convs = write_jsonl(
        tmp_path / "sharegpt.jsonl",
        [
            {
                "conversations": [
                    {"from": "human", "value": aime[7]["problem"].replace("$", "")},
                    {"from": "gpt", "value": "ok"},
                ]
            }
        ],
    )
    out = tmp_path / "audit"
    result = _audit(app, [sft, convs], out, "aime24,aime25", shared_data)
    assert result.exit_code == 0, result.output
    assert "aime24" in result.output and "2 of 3 rows flagged" in result.output
    report = json.loads((out / "report.json").read_text())
    hits = {(h["row"], h["benchmark_id"]) for h in report["details"]["hits"]}
    assert hits == {(0, str(aime[3]["id"])), (2, str(aime[7]["id"]))}
    flagged = [json.loads(line) for line in (out / "flagged.jsonl").read_text().split("\n") if line]
    assert [json.loads(f["drop_detail"])["benchmark"] for f in flagged] == ["aime24", "aime24"]
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html


def test_benchmarks_lists_rows_and_locations(app, shared_data):
    result = runner.invoke(
        app, ["benchmarks", "--benchmark-dir", str(shared_data / "benchmarks")], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert (
        "5,000" in result.output
        and "math_test_5000.jsonl" in result.output
        and "mbpp_test.jsonl" in result.output
    )


def test_errors_are_one_clear_line(app, shared_data, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"problem": "x"}])
    result = runner.invoke(
        app,
        [
            "decontaminate",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--benchmarks",
            "nope",
            "--benchmark-dir",
            str(shared_data / "benchmarks"),
        ],
    )
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "unknown benchmark(s) nope" in result.output
    result = runner.invoke(
        app,
        [
            "decontaminate",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--methods",
            "llm",
            "--benchmark-dir",
            str(shared_data / "benchmarks"),
        ],
    )
    assert result.exit_code == 1 and "not configured" in result.output


def test_a_lost_caret_does_not_hide_a_leak_and_near_misses_say_why(app, shared_data, tmp_path):
    """DeepCoder's LiveCodeBench training file holds LeetCode's "equalindromic" problem with "less
    than 10^9" where the test set's scrape says "less than 109": the same number (coverage 0.95). The
    printed near-miss table states the flag rule and shows both texts and the rule that kept the pair."""
    out = tmp_path / "audit"
    source = shared_data / "sources" / "deepcoder_train_livecodebench.jsonl"
    result = _audit(app, [source], out, "leetcode", shared_data, columns=400)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    hits = {(h["row"], h["benchmark_id"]): h for h in report["details"]["hits"]}
    assert (142, "71") in hits and "equalindromic" in hits[(142, "71")]["evidence"]
    output = " ".join(result.output.split())
    assert (
        "Near misses, ngram" in output and "coverage >= 0.3 of the item's non-boilerplate 6-grams" in output
    )
    # the next-best kept pair: the same LeetCode problem with one example number changed (5655)
    assert "number check: overlap, but 1 of the item's numbers missing from the row: 5655" in output
    assert "row 178: You are given two arrays with positive integers arr1" in output
    assert "leetcode/119: Please solve the programming task below" in output
