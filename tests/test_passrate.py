"""Pass rates: the stage's arithmetic and filter, and the real Qwen2.5-Math 100 x 8 labelled samples."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import polars as pl
import pytest

from flows.cli_verify import LABELLED_GENERATION_FIELDS, read_records, to_generation_rows
from stages.passrate import LostProblem, PassRateConfig, ProblemFates, RateCount, rate_values
from stages.registry import run_stage, stage
from stages.runner import Step, run_step
from stages.store import write_json
from stages.verify import VerifyConfig, verify_rows

QWEN = "generations/qwen25math_math_cot_100_samples.jsonl"
# docs/verification.md, "Every disagreement, adjudicated": the shipped label of idx 72 sample 7 is
# wrong (gold 10{,}000, boxed 10000); 25/1, 45/5, 48/3 are right answers in garbage traces that the
# language-mixing filter drops (and pass_rate counts as failures).
MISLABELLED = {("72", 7)}
LANGUAGE_MIXING = {("25", 1), ("45", 5), ("48", 3)}


def keys(pairs: set[tuple[str, int]]) -> list[str]:
    return [f"{u}/{s}" for u, s in pairs]


def write_rows(directory: Path, frame: pl.DataFrame) -> Path:
    directory.mkdir(parents=True)
    frame.write_parquet(directory / "part-00000.parquet")
    return directory


def toy_rows() -> pl.DataFrame:
    # p1: 2/3 correct (one unverified sample does not count); p2: 0/2; p3: 2/2; p4: no verdict at all
    return pl.DataFrame(
        {
            "uid": ["p1"] * 4 + ["p2"] * 2 + ["p3"] * 2 + ["p4"],
            "sample": [0, 1, 2, 3, 0, 1, 0, 1, 0],
            "correct": [True, True, False, None, False, False, True, True, None],
        }
    )


def test_rates_filter_and_evidence(tmp_path):
    rows = write_rows(tmp_path / "in", toy_rows())
    report = run_stage("pass_rate", rows, PassRateConfig(low=0.1, high=0.9), tmp_path / "out")
    assert (report.rows_in, report.rows_kept) == (9, 5), "p1's 4 rows and p4 (unrated, kept)"
    assert report.drop_reasons == {"too_hard": 2, "too_easy": 2}
    kept = pl.read_parquet(tmp_path / "out" / "kept").sort("uid", "sample")
    p1 = kept.filter(pl.col("uid") == "p1")
    assert p1["pass_rate"].to_list() == [pytest.approx(2 / 3)] * 4 and p1["n_samples"].to_list() == [3] * 4
    p4 = kept.filter(pl.col("uid") == "p4").row(0, named=True)
    assert p4["pass_rate"] is None and p4["n_samples"] == 0
    dropped = pl.read_parquet(tmp_path / "out" / "dropped")
    detail = json.loads(dropped.filter(pl.col("uid") == "p3")["drop_detail"][0])
    assert detail == {
        "pass_rate": 1.0,
        "n_correct": 2,
        "n_samples": 2,
        "n_failed_by_verifier": 0,
        "low": 0.1,
        "high": 0.9,
        "rated_by": "teacher",
    }
    assert dropped.filter(pl.col("uid") == "p2")["drop_reason"].unique().to_list() == ["too_hard"]
    d = report.details
    assert d.problems == ProblemFates(total=4, kept=1, too_hard=1, too_easy=1, unrated=1)
    assert d.rated == 3 and sorted(rate_values(d)) == [0.0, pytest.approx(2 / 3), 1.0]
    assert d.verifier_drops is None, "the input is not a verify stage's kept rows: no drops to count"


def verify_stage(directory: Path) -> Path:
    """A verify stage's output shaped like the quickstart's: 10 problems x 2 samples in, 14 kept,
    6 dropped (no_final_answer 3, verifier_error 2, truncated 1). q1 and q4 lose every sample."""
    outcomes = {  # uid: (sample 0, sample 1); True/False = kept with that verdict, str = dropped
        "q0": (True, False),
        "q1": ("no_final_answer", "truncated"),
        "q2": (False, "no_final_answer"),
        "q3": (True, "verifier_error"),
        "q4": ("verifier_error", "no_final_answer"),
        **{f"q{i}": (False, False) for i in range(5, 9)},
        "q9": (True, True),
    }
    rows = [(u, s, o) for u, pair in outcomes.items() for s, o in enumerate(pair)]
    kept = pl.DataFrame(
        [(u, s, o) for u, s, o in rows if isinstance(o, bool)],
        schema=["uid", "sample", "correct"],
        orient="row",
    )
    dropped = pl.DataFrame(
        [(u, s, o, "{}") for u, s, o in rows if isinstance(o, str)],
        schema=["uid", "sample", "drop_reason", "drop_detail"],
        orient="row",
    )
    for part, frame in (("kept", kept), ("dropped", dropped)):  # a verify stage's published directory
        (directory / part).mkdir(parents=True)
        frame.write_parquet(directory / part / "part-00000-00000.parquet")
    write_json(directory / "report.json", {"stage": "verify", "rows_in": len(rows)})
    return directory / "kept"


def test_verifier_drops_are_failures_and_every_problem_is_accounted_for(tmp_path):
    kept = verify_stage(tmp_path / "07-verify")
    report = run_stage("pass_rate", kept, PassRateConfig(low=0.1, high=1.0), tmp_path / "out")
    assert (report.rows_in, report.rows_kept, report.drop_reasons) == (14, 5, {"too_hard": 9})
    d = report.details
    assert d.problems == ProblemFates(total=10, too_hard=5, kept=3, no_kept_sample=2), "10 in, 10 rated"
    assert d.rated == 10
    assert d.verifier_drops.counted_as_failures == 4
    assert d.verifier_drops.failures_by_reason == {"no_final_answer": 3, "truncated": 1}
    assert d.verifier_drops.not_counted == {"verifier_error": 2}, "our checker failed, not the sample"
    assert d.no_kept_sample == [
        LostProblem(uid="q1", n_correct=0, n_samples=2),
        LostProblem(uid="q4", n_correct=0, n_samples=1),
    ]
    rates = {r["uid"]: r for r in pl.read_parquet(tmp_path / "out" / "rates").iter_rows(named=True)}
    assert len(rates) == 10
    assert (rates["q2"]["n_correct"], rates["q2"]["n_samples"], rates["q2"]["fate"]) == (0, 2, "too_hard")
    assert rates["q2"]["n_failed_by_verifier"] == 1, "its no_final_answer sample is a failure"
    assert (rates["q3"]["pass_rate"], rates["q3"]["n_samples"]) == (1.0, 1), "verifier_error does not count"
    assert (rates["q1"]["pass_rate"], rates["q1"]["fate"], rates["q1"]["n_kept"]) == (
        0.0,
        "no_kept_sample",
        0,
    )
    kept_rows = pl.read_parquet(tmp_path / "out" / "kept")
    q0 = kept_rows.filter(pl.col("uid") == "q0")
    assert q0["pass_rate"].to_list() == [0.5, 0.5] and q0["n_samples"].to_list() == [2, 2]
    detail = json.loads(
        pl.read_parquet(tmp_path / "out" / "dropped").filter(pl.col("uid") == "q2")["drop_detail"][0]
    )
    assert (detail["n_samples"], detail["n_failed_by_verifier"]) == (2, 1)
    assert sum(r.problems for r in d.rate_counts) == 10


def test_the_verifiers_drops_are_part_of_the_cache_key(tmp_path):
    """pass_rate reads the verifier's dropped/ beside its input: changing it re-runs the stage."""
    kept = verify_stage(tmp_path / "07-verify")
    step = Step(stage("pass_rate"), PassRateConfig(low=0.1), kept, tmp_path / "08-pass_rate")
    first = run_step(step)
    assert not first.cached and run_step(step).cached, "same input, same drops: a hit"
    dropped = tmp_path / "07-verify" / "dropped" / "part-00000-00000.parquet"
    pl.read_parquet(dropped).filter(pl.col("uid") != "q2").write_parquet(dropped)  # q2's failure gone
    again = run_step(step)
    assert not again.cached, "the drops changed: a miss"
    rates = pl.read_parquet(tmp_path / "08-pass_rate" / "rates").filter(pl.col("uid") == "q2")
    assert rates.select("n_correct", "n_samples").row(0) == (0, 1)


def test_unrated_drop_and_bounds(tmp_path):
    rows = write_rows(tmp_path / "in", toy_rows())
    report = run_stage("pass_rate", rows, PassRateConfig(unrated="drop"), tmp_path / "out")
    assert report.drop_reasons == {"unrated": 1}, "0 <= rate <= 1 keeps every rated problem"
    with pytest.raises(ValueError, match="low"):
        PassRateConfig(low=0.8, high=0.2)


def test_needs_verdicts_without_a_student(tmp_path):
    rows = write_rows(tmp_path / "in", pl.DataFrame({"uid": ["a"], "problem": ["1+1?"]}))
    with pytest.raises(ValueError, match="verify"):
        run_stage("pass_rate", rows, PassRateConfig(), tmp_path / "out")


@pytest.fixture(scope="module")
def qwen(shared_data) -> pl.DataFrame:
    records, bad = read_records(shared_data / QWEN)
    assert not bad
    return to_generation_rows(records, LABELLED_GENERATION_FIELDS, "math_cot_100", "math")


def shipped_rates(records: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """(correct, samples) per idx straight from the file's `score` lists."""
    return {
        r["uid"]: (r["c"], r["n"])
        for r in records.group_by("uid")
        .agg(pl.col("label").sum().alias("c"), pl.len().alias("n"))
        .iter_rows(named=True)
    }


def rates_of(directory: Path) -> dict[str, tuple[int, int, float]]:
    kept = pl.read_parquet(directory / "kept").unique("uid")
    return {
        r["uid"]: (round(r["pass_rate"] * r["n_samples"]), r["n_samples"], r["pass_rate"])
        for r in kept.iter_rows(named=True)
    }


def test_shipped_labels_are_reproduced_exactly(qwen, tmp_path):
    labelled = qwen.with_columns(pl.col("label").alias("correct"))
    rows = write_rows(tmp_path / "in", labelled)
    report = run_stage("pass_rate", rows, PassRateConfig(), tmp_path / "out")
    assert report.rows_kept == 800
    ours = rates_of(tmp_path / "out")
    expected = shipped_rates(qwen)
    assert len(ours) == 100
    for uid, (c, n) in expected.items():
        assert ours[uid][1] == n == 8 and ours[uid][2] == c / n, uid
    # the file's own histogram of correct counts: 86 problems 8/8, 4 problems 0/8, ...
    assert sum(1 for c, _, _ in ours.values() if c == 8) == 86
    assert sum(1 for c, _, _ in ours.values() if c == 0) == 4


def test_verifier_rates_differ_only_on_documented_samples(qwen, tmp_path):
    verify_rows([qwen], VerifyConfig(workers=2), tmp_path / "verified")
    verified = pl.read_parquet(tmp_path / "verified" / "kept")
    dropped = pl.read_parquet(tmp_path / "verified" / "dropped")
    assert {(u, s) for u, s in dropped.select("uid", "sample").iter_rows()} == LANGUAGE_MIXING
    assert dropped["drop_reason"].unique().to_list() == ["language_mixing"]

    report = run_stage("pass_rate", tmp_path / "verified" / "kept", PassRateConfig(), tmp_path / "out")
    ours = rates_of(tmp_path / "out")
    # expected: the shipped labels with the documented corrections applied, sample by sample; a sample
    # the verifier dropped is a failure, whatever its label
    key = pl.concat_str("uid", pl.lit("/"), pl.col("sample").cast(pl.String))
    corrected = qwen.with_columns(
        pl.when(key.is_in(keys(MISLABELLED)))
        .then(~pl.col("label"))
        .when(key.is_in(keys(LANGUAGE_MIXING)))
        .then(False)
        .otherwise(pl.col("label"))
        .alias("label")
    )
    expected = shipped_rates(corrected)
    assert {u: (c, n) for u, (c, n, _) in ours.items()} == expected
    differing = {u for u, (c, n) in shipped_rates(qwen).items() if (c / n) != ours[u][2]}
    documented = {u for u, _ in MISLABELLED | LANGUAGE_MIXING}
    assert differing == documented, "rates differ exactly on problems with a documented sample"
    shipped = shipped_rates(qwen)
    assert shipped["72"] == (0, 8) and ours["72"][:2] == (1, 8), "idx 72 sample 7 is right: 1/8, not 0/8"
    for uid in ("25", "45", "48"):  # 8/8 by the labels; the garbage sample is a failure: 7/8
        assert shipped[uid] == (8, 8) and ours[uid][:2] == (7, 8)
    d = report.details
    assert d.verifier_drops.counted_as_failures == 3
    assert d.verifier_drops.failures_by_reason == {"language_mixing": 3}
    assert d.problems.total == d.rated == 100
    # every kept verdict agrees with the corrected labels, sample by sample
    joined = verified.join(
        corrected.select("uid", "sample", pl.col("label").alias("truth")), on=["uid", "sample"]
    )
    assert joined.height == 797 and (joined["correct"] == joined["truth"]).all()


def test_student_samples_k_per_problem_and_rates_them(tmp_path, monkeypatch):
    """A student (the fake OpenAI server: it answers len(prompt) % 97 every time) solves exactly the
    problems whose gold we set to that number: 3/3 for those, 0/3 for the others."""
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_openai import FakeOpenAI, write_problems

    from prompts.templates import load_template
    from stages.generate import GenerateConfig

    kept = write_problems(tmp_path / "problems", 6)
    frame = pl.read_parquet(kept)
    template = load_template("teacher_math")
    solvable = frame["uid"].to_list()[:2]
    frame = frame.with_columns(
        pl.when(pl.col("uid").is_in(solvable))
        .then(pl.col("problem").map_elements(lambda p: str(len(template.render(problem=p)) % 97), pl.String))
        .otherwise(pl.lit("-1"))
        .alias("answer")
    )
    frame.write_parquet(kept / "part-00000.parquet")
    with FakeOpenAI() as fake:
        monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        monkeypatch.setenv("FAKE_API_KEY", "sk-test")
        student = GenerateConfig(
            llm=dict(
                model="fake-student",
                base_url_env="FAKE_BASE_URL",
                api_key_env="FAKE_API_KEY",
                n=3,
                cache_dir=tmp_path / "cache",
                progress=False,
            )
        )
        config = PassRateConfig(low=0.5, student=student, student_verify=VerifyConfig(workers=1))
        report = run_stage("pass_rate", kept, config, tmp_path / "out")
    assert (report.rows_in, report.rows_kept, report.drop_reasons) == (6, 2, {"too_hard": 4})
    out = pl.read_parquet(tmp_path / "out" / "kept")
    assert sorted(out["uid"]) == sorted(solvable)
    assert out["pass_rate"].to_list() == [1.0, 1.0] and out["n_samples"].to_list() == [3, 3]
    d = report.details
    assert d.rated_by == "student:fake-student" and d.student.k == 3 and d.student.problems == 6
    assert (d.student.generate.rows_kept, d.student.verify.rows_in) == (18, 18)
    assert d.rate_counts == [
        RateCount(n_correct=0, n_samples=3, problems=4),
        RateCount(n_correct=3, n_samples=3, problems=2),
    ]
    samples = pl.read_parquet(tmp_path / "out" / "student" / "round-1" / "02-verify" / "kept")
    assert samples.height == 18 and samples.group_by("uid").len()["len"].to_list() == [3] * 6


def test_a_student_after_a_stage_that_kept_nothing_rates_nothing(tmp_path):
    """light_r1 at --limit 40 on the CPU model: the stage-1 export kept no SFT row, so the stage-2
    pass_rate's input held no shard at all; it crashed reading it. Now: 0 in, 0 out, no model called."""
    from stages.generate import GenerateConfig

    empty = tmp_path / "export" / "kept"
    empty.mkdir(parents=True)
    student = GenerateConfig(llm=dict(model="never-called", base_url="http://127.0.0.1:9", n=8))
    report = run_stage("pass_rate", empty, PassRateConfig(student=student), tmp_path / "out")
    assert (report.rows_in, report.rows_kept, report.rows_dropped) == (0, 0, 0)
    assert report.details.student.problems == 0 and report.details.student.samples_drawn == 0
    assert report.details.student.rounds == []


def mixed_student(prompt: str, sample: int) -> str:
    """Problem i (`what is i + i?`): i % 3 == 0 always right, 1 always wrong, 2 right on even samples."""
    i = int(re.search(r"what is (\d+) \+", prompt).group(1))
    right = {0: True, 1: False, 2: sample % 2 == 0}[i % 3]
    return f"The answer is \\boxed{{{2 * i if right else 2 * i + 1}}}."


def rate_with_student(tmp_path, monkeypatch, out: str, rounds: list[int] | None):
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_openai import FakeOpenAI, write_problems

    from stages.generate import GenerateConfig

    problems = write_problems(tmp_path / "problems", 12)
    with FakeOpenAI(sample_answer_fn=mixed_student) as fake:
        monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        monkeypatch.setenv("FAKE_API_KEY", "sk-test")
        llm = dict(model="fake-student", base_url_env="FAKE_BASE_URL", api_key_env="FAKE_API_KEY", n=8,
                   cache_dir=tmp_path / out / "cache", progress=False)  # fmt: skip
        config = PassRateConfig(
            low=0.1,
            high=0.9,
            rounds=rounds,
            student=GenerateConfig(llm=llm),
            student_verify=VerifyConfig(workers=1),
        )
        report = run_stage("pass_rate", problems, config, tmp_path / out)
        served = sum(fake.answered.values())
    kept = set(pl.read_parquet(tmp_path / out / "kept")["uid"])
    dropped = dict(pl.read_parquet(tmp_path / out / "dropped").select("uid", "drop_reason").iter_rows())
    return report, kept, dropped, served


def test_adaptive_rounds_draw_fewer_samples_and_decide_the_same(tmp_path, monkeypatch):
    _full, kept_full, dropped_full, served_full = rate_with_student(tmp_path, monkeypatch, "full", None)
    fast, kept_fast, dropped_fast, served_fast = rate_with_student(tmp_path, monkeypatch, "fast", [2, 4, 8])
    assert (kept_fast, dropped_fast) == (kept_full, dropped_full), "the same fate for every problem"
    assert len(kept_full) == 4 and set(dropped_full.values()) == {"too_easy", "too_hard"}
    assert served_full == 12 * 8
    # the 4 mixed problems are settled after 2 samples (1 of 2 right: between 1/8 and 7/8 whatever
    # follows); the 8 that are all right or all wrong need all 8 to leave the band
    assert fast.details.student.decided_per_round == [4, 0, 8]
    assert served_fast == fast.details.student.samples_drawn == 4 * 2 + 8 * 8
    assert fast.details.student.samples_without_early_stop == 96
    # tokens count each problem's samples once, from its last round: the 72 samples drawn
    every = pl.read_parquet(tmp_path / "full" / "student" / "round-1" / "01-generate" / "kept")
    mixed = pl.col("uid").str.slice(1).cast(pl.Int64) % 3 == 2
    drawn = every.filter(~mixed | (pl.col("sample") < 2))
    assert drawn.height == 72
    assert fast.details.student.completion_tokens == drawn["completion_tokens"].sum()
