"""The generation stage against a misbehaving fake OpenAI server: faults, failures, cache, secrets."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI, write_problems

from stages.generate import GenerateConfig
from stages.registry import run_stage

KEY = "sk-test-VERY-SECRET-0123456789"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    return monkeypatch


def config(fake: FakeOpenAI, tmp_path: Path, env: pytest.MonkeyPatch, **overrides: Any) -> GenerateConfig:
    env.setenv("FAKE_BASE_URL", fake.base_url)
    values: dict[str, Any] = {
        "model": "fake-teacher",
        "base_url_env": "FAKE_BASE_URL",
        "api_key_env": "FAKE_API_KEY",
        "n": 4,
        "concurrency": 8,
        "timeout_s": 0.5,
        "max_retries": 10,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "cache_dir": tmp_path / "cache",
        "progress": False,
        "prices": {"input_per_1m": 1.0, "output_per_1m": 4.0},
    }
    values |= overrides
    stage = {k: values.pop(k) for k in ("limit", "templates") if k in values}
    return GenerateConfig(llm=values, **stage)


def generate(problems: Path, cfg: GenerateConfig, out: Path) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    report = run_stage("generate", problems, cfg, out, force=True).model_dump(mode="json")
    kept = pl.read_parquet(out / "kept") if list((out / "kept").glob("*.parquet")) else pl.DataFrame()
    dropped = (
        pl.read_parquet(out / "dropped") if list((out / "dropped").glob("*.parquet")) else pl.DataFrame()
    )
    return report, kept, dropped


@pytest.mark.parametrize("http_client", ["aiohttp", "openai"])
def test_twenty_percent_faults_end_with_exactly_n_samples(
    tmp_path: Path, env: pytest.MonkeyPatch, http_client: str
) -> None:
    problems = write_problems(tmp_path / "in", 30, domains=("math", "code"))
    fake = FakeOpenAI(latency=0.01, fault_rate=0.2, seed=7, slow_s=0.1, hang_s=5, truncate_rate=0.1)
    with fake:
        cfg = config(fake, tmp_path, env, http_client=http_client)
        report, kept, dropped = generate(problems, cfg, tmp_path / "out")
    details = report["details"]
    assert dropped.height == 0
    assert kept.height == 30 * 4
    assert kept.group_by("uid").len()["len"].to_list() == [4] * 30
    assert kept.select("uid", "sample").n_unique() == 120
    # every kind of fault was injected, and each one shows up as a counted retry
    assert set(fake.faults_sent) == {"slow", "429", "500", "malformed", "close", "hang"}
    injected = sum(n for f, n in fake.faults_sent.items() if f != "slow")
    assert details["retries"] == injected > 0
    assert set(details["retries_by_kind"]) == {"http_429", "http_500", "malformed", "connection", "timeout"}
    assert details["attempts"] == details["requests"] + details["retries"] == sum(fake.attempts.values())
    assert not fake.duplicates(), "a finished sample was requested again"
    # rows carry what the verifier needs, and truncation is marked, not dropped
    assert {"answer", "problem", "domain", "tests", "truncated", "template_hash"} <= set(kept.columns)
    truncated = kept.filter(pl.col("truncated"))
    assert truncated.height == details["truncated"] > 0
    assert (truncated["finish_reason"] == "length").all() and (truncated["response"] == "").all()
    finished = kept.filter(~pl.col("truncated"))
    assert finished["response"].str.contains(r"\\boxed\{").all()
    assert finished["reasoning"].str.starts_with("Let me think").all()
    assert set(kept["template"]) == {"teacher_math", "teacher_code"}
    # usage and cost add up
    assert details["tokens_out"] == kept["completion_tokens"].sum()
    assert kept["cost_usd"].sum() == pytest.approx(details["cost_usd"], rel=1e-4)
    assert details["latency_s"]["p50"] <= details["latency_s"]["p99"]


def test_request_failing_for_good_is_a_dropped_row(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "in", 6)
    with FakeOpenAI(fail_prompts=("Problem p2:",)) as fake:
        cfg = config(fake, tmp_path, env, n=2, max_retries=2)
        report, kept, dropped = generate(problems, cfg, tmp_path / "out")
    assert kept.height == 10 and dropped.height == 2
    assert report["rows_in"] == 12 and report["drop_reasons"] == {"request_failed": 2}
    assert set(dropped["uid"]) == {"p000002"} and sorted(dropped["sample"]) == [0, 1]
    detail = json.loads(dropped["drop_detail"][0])
    assert detail["kind"] == "http_500" and "upstream failure" in detail["message"]
    assert report["details"]["errors_by_kind"] == {"http_500": 2}
    assert report["details"]["retries_by_kind"] == {"http_500": 4}  # 2 retries for each of 2 samples


def test_rerun_is_a_cache_hit_and_failures_are_retried(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "in", 5)
    with FakeOpenAI(fail_prompts=("Problem p4:",), fail_status=400) as fake:
        cfg = config(fake, tmp_path, env, n=3)
        generate(problems, cfg, tmp_path / "out1")
        attempts = sum(fake.attempts.values())
        assert attempts == 15  # 400 is not retried
        fake.fail_prompts = ()
        report, kept, dropped = generate(problems, cfg, tmp_path / "out2")
    assert sum(fake.attempts.values()) == attempts + 3  # only the 3 failed samples were asked again
    assert report["details"]["cache_hits"] == 12 and kept.height == 15 and dropped.height == 0
    assert not fake.duplicates()


def test_raising_n_reuses_samples_and_changing_params_does_not(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    problems = write_problems(tmp_path / "in", 4)
    with FakeOpenAI() as fake:
        generate(problems, config(fake, tmp_path, env, n=2), tmp_path / "o1")
        report, kept, _ = generate(problems, config(fake, tmp_path, env, n=3), tmp_path / "o2")
        assert report["details"]["cache_hits"] == 8 and report["details"]["requests"] == 4
        report, _, _ = generate(problems, config(fake, tmp_path, env, n=3, temperature=0.9), tmp_path / "o3")
        assert report["details"]["cache_hits"] == 0 and report["details"]["requests"] == 12
    assert kept.height == 12


def test_n_per_request_and_a_server_that_ignores_n(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "in", 5)
    with FakeOpenAI() as fake:
        report, kept, _ = generate(problems, config(fake, tmp_path, env, n_per_request=True), tmp_path / "o1")
    assert report["details"]["requests"] == 5 and kept.height == 20
    with FakeOpenAI(supports_n=False) as fake:  # answers one choice whatever n says
        cfg = config(fake, tmp_path / "b", env, n_per_request=True)
        report, kept, _ = generate(problems, cfg, tmp_path / "o2")
    assert kept.height == 20 and kept.select("uid", "sample").n_unique() == 20
    assert report["details"]["requests"] == 20 and report["details"]["retries_by_kind"] == {"short_n": 15}
    assert not fake.duplicates()


def test_limit_templates_and_bad_rows(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "in", 10, domains=("math", "puzzle"))
    with FakeOpenAI() as fake:
        cfg = config(fake, tmp_path, env, n=2, limit=6, templates={"math": "teacher_math"})
        report, kept, dropped = generate(problems, cfg, tmp_path / "out")
    assert report["rows_in"] == 6 * 2 + 4, "6 problems x 2 samples, plus one row per problem past the limit"
    assert kept.height == 6 and set(kept["domain"]) == {"math"}
    assert report["drop_reasons"] == {"no_template": 6, "over_limit": 4}
    assert dropped.filter(pl.col("drop_reason") == "over_limit")["sample"].is_null().all()
    assert report["details"]["templates"] == {"teacher_math": kept["template_hash"][0]}


def test_rate_limit_storm_honours_retry_after(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    problems = write_problems(tmp_path / "in", 10)
    with FakeOpenAI(fault_rate=0.5, faults=("429",), retry_after=0.2, seed=1) as fake:
        cfg = config(fake, tmp_path, env, n=1, concurrency=4, backoff_base_s=0.0, backoff_max_s=0.0)
        report, kept, _ = generate(problems, cfg, tmp_path / "out")
    assert kept.height == 10
    rate_limited = report["details"]["retries_by_kind"]["http_429"]
    assert rate_limited == fake.faults_sent["429"] > 0
    # with zero backoff configured, only Retry-After can account for the waiting
    assert report["details"]["wall_s"] >= 0.2 * rate_limited / 4


def test_secrets_never_leave_the_environment(
    tmp_path: Path, env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    problems = write_problems(tmp_path / "in", 4)
    outputs = []
    for status, client in ((401, "aiohttp"), (500, "openai")):  # the server echoes the Authorization header
        with FakeOpenAI(fail_prompts=("Problem",), fail_status=status, echo_auth=True) as fake:
            cfg = config(fake, tmp_path / client, env, n=2, max_retries=1, http_client=client, progress=True)
            report, kept, dropped = generate(problems, cfg, tmp_path / f"out-{client}")
        assert kept.height == 0 and dropped.height == 8
        assert "***" in dropped["drop_detail"][0]  # the echo arrived, redacted
        outputs += [json.dumps(report), dropped.write_csv()]
        outputs += [
            p.read_bytes().decode("latin-1") for p in (tmp_path / f"out-{client}").rglob("*") if p.is_file()
        ]
    captured = capfd.readouterr()
    outputs += [caplog.text, captured.out, captured.err]
    assert all(KEY not in text for text in outputs)
    env.delenv("FAKE_API_KEY")
    with pytest.raises(RuntimeError, match="FAKE_API_KEY") as error:
        generate(problems, cfg, tmp_path / "out-nokey")
    assert KEY not in str(error.value)


def test_cli_generate_command(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from flows.cli_generate import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer from collapsing into one
    problems = write_problems(tmp_path / "stage" / "x", 3).parent
    settings = tmp_path / "gen.yaml"
    settings.write_text(
        "llm: {base_url_env: FAKE_BASE_URL, api_key_env: FAKE_API_KEY, progress: false, n: 5}\n"
    )
    with FakeOpenAI() as fake:
        env.setenv("FAKE_BASE_URL", fake.base_url)
        args = ["generate", str(problems), "--out", str(tmp_path / "out"), "--model", "m", "--n", "2"]
        args += ["--cache-dir", str(tmp_path / "cache"), "--config", str(settings)]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "kept 6" in result.output
        and json.loads((tmp_path / "out" / "report.json").read_text())["rows_kept"] == 6
    )


def test_cli_generate_fails_when_no_sample_succeeded(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    problems = write_problems(tmp_path / "stage" / "x", 3).parent
    settings = tmp_path / "gen.yaml"
    settings.write_text("llm: {base_url_env: FAKE_BASE_URL, api_key_env: FAKE_API_KEY, progress: false}\n")
    with FakeOpenAI(fail_prompts=("Problem",), fail_status=401) as fake:
        env.setenv("FAKE_BASE_URL", fake.base_url)
        args = ["generate", str(problems), "--out", str(tmp_path / "out"), "--model", "m", "--n", "2"]
        args += ["--cache-dir", str(tmp_path / "cache"), "--config", str(settings)]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "http_401 6" in result.output and "no sample succeeded" in result.output


def test_runs_from_inside_an_event_loop(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    """A notebook or an async orchestrator already runs a loop in this thread: the stage still works."""
    import asyncio

    problems = write_problems(tmp_path / "in", 2)
    with FakeOpenAI() as fake:
        cfg = config(fake, tmp_path, env, n=2)

        async def inside() -> tuple[dict, pl.DataFrame, pl.DataFrame]:
            return generate(problems, cfg, tmp_path / "out")

        _, kept, _ = asyncio.run(inside())
    assert kept.height == 4


SENIORS = """```python
from typing import List


class Solution:
    def countSeniors(self, details: List[str]) -> int:
        return sum(int(d[11:13]) > 60 for d in details)
```"""


def test_a_functional_code_problem_is_verified_after_generation(
    tmp_path: Path, env: pytest.MonkeyPatch, shared_data: Path
) -> None:
    """A LiveCodeBench problem's function name lives in its starter code (meta): the samples carry
    it to the verifier, which calls the function on the tests (it used to fail as bad_tests)."""
    from conftest import run_collect

    from stages.collect import CollectConfig, SourceSpec
    from stages.verify.stage import VerifyConfig

    path = shared_data / "sources" / "deepcoder_train_livecodebench.jsonl"
    source = SourceSpec(name="lcb", path=path, preset="deepcoder_train_livecodebench", limit=1)
    collected = run_collect(CollectConfig(sources=[source]), tmp_path / "collect")
    assert collected["rows_kept"] == 1, collected
    with FakeOpenAI(answer_fn=lambda prompt: SENIORS) as fake:
        cfg = config(fake, tmp_path, env, n=1)
        report, kept, _ = generate(tmp_path / "collect" / "kept", cfg, tmp_path / "gen")
    assert report["rows_in"] == 1 and "countSeniors" in json.loads(kept["meta"][0])["starter_code"]
    verified = run_stage("verify", tmp_path / "gen" / "kept", VerifyConfig(), tmp_path / "verify", force=True)
    assert verified.rows_kept == 1, verified.drop_reasons
    row = pl.read_parquet(tmp_path / "verify" / "kept")
    assert row["correct"].to_list() == [True]
