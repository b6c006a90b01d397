"""LLM judges through the one LLM client: verify's judge and decontamination's `llm` method ask a
real OpenAI-compatible server (the fake) through stages.llm, cached per question, in one cache."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from stages.decontam.config import JudgeConfig as DecontamJudge
from stages.decontam.judge import judge_pairs, resolve_backend
from stages.llm import LLMConfig, LLMError, complete
from stages.store import StageWriter
from stages.verify import JudgeConfig, VerifyConfig, verify_frames
from tests.fake_openai import FakeOpenAI


def teacher(fake: FakeOpenAI, tmp_path, monkeypatch) -> LLMConfig:
    monkeypatch.setenv("JUDGE_URL", fake.base_url)
    monkeypatch.setenv("JUDGE_KEY", "sk-judge-test")
    return LLMConfig(
        model="fake-judge",
        base_url_env="JUDGE_URL",
        api_key_env="JUDGE_KEY",
        n=1,
        max_tokens=64,
        timeout_s=5,
        cache_dir=tmp_path / "judge-cache",
        progress=False,
    )


def test_complete_returns_final_replies_and_caches_them(tmp_path, monkeypatch):
    with FakeOpenAI(answer_fn=lambda prompt: f"echo {prompt[-3:]}") as fake:
        cfg = teacher(fake, tmp_path, monkeypatch)
        conversations = [[{"role": "user", "content": f"question {i:03d}"}] for i in range(5)]
        first = complete(conversations, cfg)
        requests = sum(fake.attempts.values())
        again = complete(conversations, cfg)
    assert first == [f"echo {i:03d}" for i in range(5)], "the reasoning (<think>) is split off"
    assert again == first and sum(fake.attempts.values()) == requests == 5, "asked once, then cached"


def test_verify_judges_proofs_through_the_teacher_backend(tmp_path, monkeypatch):
    def verdict(prompt: str) -> str:
        correct = "x^2 >= 0 because squares are non-negative" in prompt
        return json.dumps({"verdict": "correct" if correct else "incorrect", "reason": "checked"})

    rows = pl.DataFrame(
        {
            "uid": ["good", "bad"],
            "sample": [0, 0],
            "source": ["s", "s"],
            "domain": ["math", "math"],
            "problem": ["Prove that x^2 >= 0 for real x."] * 2,
            "answer": [None, None],
            "reasoning": ["Think about squares of reals, which are products of equal factors."] * 2,
            "response": [
                "Answer: x^2 >= 0 because squares are non-negative.",
                "Answer: it is obvious, trust me.",
            ],
            "finish_reason": ["stop", "stop"],
        }
    )
    with FakeOpenAI(answer_fn=verdict) as fake:
        judge = JudgeConfig(enabled=True, llm=teacher(fake, tmp_path, monkeypatch))
        cfg = VerifyConfig(workers=1, judge=judge, unverifiable="keep")
        with StageWriter(tmp_path / "out", "verify") as out:
            report = out.finish(verify_frames([rows], cfg, out))
        asked = sum(fake.attempts.values())
    kept = pl.read_parquet(tmp_path / "out" / "kept")
    verdicts = dict(zip(kept["uid"], kept["correct"], strict=True))
    assert verdicts == {"good": True, "bad": False} and asked == 2
    assert set(kept["verifier"]) == {"judge"} and report["rows_in"] == 2
    assert "sk-judge-test" not in (tmp_path / "out" / "report.json").read_text()


def test_decontamination_judge_uses_the_teacher_backend(tmp_path, monkeypatch):
    def same(prompt: str) -> str:
        train = prompt.rsplit("TRAINING problem:", 1)[1]
        return "True - same problem" if re.search(r"\bAya\b", train) else "False - different"

    pairs = pl.DataFrame(
        {
            "train_text": ["Aya walks 9 km every morning at s km/h ...", "A train leaves at noon ..."],
            "benchmark_text": ["Every morning Aya goes for a 9-kilometer-long walk ..."] * 2,
        }
    )
    with FakeOpenAI(answer_fn=same) as fake:
        ask = resolve_backend(DecontamJudge(llm=teacher(fake, tmp_path, monkeypatch)))
        verdicts = judge_pairs(pairs, ask)
    assert verdicts["verdict"].to_list() == [True, False]


def test_a_judge_without_backend_says_so():
    with pytest.raises(LLMError, match=r"judge\.llm"):
        verify_frames([], VerifyConfig(judge=JudgeConfig(enabled=True)), None)  # type: ignore[arg-type]


def test_both_judges_share_one_client_and_cache(tmp_path, monkeypatch):
    """The decontamination judge and the verify judge, given the same `llm`, go through the same
    LLMClient into the same SQLite cache: a second pass of both asks the server nothing."""
    import sqlite3

    from stages.llm import LLMClient
    from stages.llm.client import CACHE_FILE

    labels = []
    original = LLMClient.request

    def spy(self, requests, expected=0):
        labels.append(self.label)
        return original(self, requests, expected)

    monkeypatch.setattr(LLMClient, "request", spy)

    def reply(prompt: str) -> str:
        if "TRAINING problem" in prompt:
            return "False - different"
        return json.dumps({"verdict": "correct", "reason": "fine"})

    pairs = pl.DataFrame({"train_text": ["A train leaves at noon ..."], "benchmark_text": ["Aya walks ..."]})
    rows = pl.DataFrame(
        {
            "uid": ["p"],
            "sample": [0],
            "source": ["s"],
            "domain": ["math"],
            "problem": ["Prove that x^2 >= 0."],
            "answer": [None],
            "reasoning": ["Squares of reals are non-negative, which settles it."],
            "response": ["x^2 >= 0 since squares are non-negative."],
            "finish_reason": ["stop"],
        },
        schema_overrides={"answer": pl.String},
    )
    with FakeOpenAI(answer_fn=reply) as fake:
        llm = teacher(fake, tmp_path, monkeypatch)
        ask = resolve_backend(DecontamJudge(llm=llm))
        cfg = VerifyConfig(workers=1, judge=JudgeConfig(enabled=True, llm=llm), unverifiable="keep")
        for attempt in range(2):
            assert judge_pairs(pairs, ask)["verdict"].to_list() == [False]
            with StageWriter(tmp_path / f"out{attempt}", "verify") as out:
                out.finish(verify_frames([rows], cfg, out))
        served = sum(fake.answered.values())
    assert labels == ["decontamination judge", "verify judge"] * 2
    assert served == 2, "one request per question; the second pass of both judges is all cache hits"
    with sqlite3.connect(llm.cache_dir / CACHE_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 2
