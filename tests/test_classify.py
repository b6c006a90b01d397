"""The `classify` stage (s1's MSC domains by an LLM) and an export budget balanced by its label."""

from __future__ import annotations

import polars as pl
import pytest

from stages.classify import ClassifyConfig, label_of, load_taxonomy
from stages.export import ExportConfig
from stages.registry import run_stage
from tests.fake_openai import FakeOpenAI
from tests.test_export import traces


@pytest.fixture
def taxonomy(shared_data):
    return shared_data / "meta/s1_msc_domains.jsonl"


def test_label_is_the_last_two_digits_when_a_known_code(taxonomy):
    codes = load_taxonomy(taxonomy)
    assert len(codes) == 61 and "11" in codes and codes["11"]["title"] == "Number theory"
    assert label_of("It is about primes.\n11", codes) == "11"
    assert label_of("Code 99", codes) is None, "not an MSC top-level code"
    assert label_of("The answer is \\boxed{5}.", codes) is None


def by_topic(prompt: str) -> str:
    """A classifier that reads the question: primes are number theory (11), the rest probability (60)."""
    question = prompt.split("## Classification rubrics")[0]
    return (
        "Reasoning...\n11" if "prime" in question else ("no idea" if "Problem 3" in question else "...\n60")
    )


def test_classify_labels_rows_and_the_budget_balances_by_them(tmp_path, taxonomy, monkeypatch):
    rows = traces(8, 2).with_columns(
        pl.when(pl.col("uid").str.slice(1).cast(int) < 2)
        .then(pl.format("Which prime is {}?", pl.col("uid")))
        .otherwise(pl.col("problem"))
        .alias("problem")
    )
    (tmp_path / "in").mkdir()
    rows.write_parquet(tmp_path / "in" / "part-00000.parquet")
    with FakeOpenAI(answer_fn=by_topic) as fake:
        monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        monkeypatch.setenv("FAKE_API_KEY", "sk-test")
        llm = {"model": "claude-3-5-sonnet-20241022", "n": 1, "base_url_env": "FAKE_BASE_URL",
               "api_key_env": "FAKE_API_KEY", "cache_dir": str(tmp_path / "cache"), "progress": False}  # fmt: skip
        report = run_stage(
            "classify", tmp_path / "in", ClassifyConfig(llm=llm, taxonomy=taxonomy), tmp_path / "c"
        )
        asked = len(fake.answered)
    assert asked == 8, "each distinct problem is asked once, not once per sample"
    labelled = pl.read_parquet(tmp_path / "c" / "kept")
    assert labelled.height == 16 and report.rows_dropped == 0, "a label never drops a row"
    msc = dict(zip(labelled["uid"], labelled["msc"], strict=False))
    assert (msc["u000"], msc["u001"], msc["u002"], msc["u003"]) == ("11", "11", "60", None)
    assert report.details.labels == {
        "60 Probability theory and stochastic processes": 10,
        "11 Number theory": 4,
    }
    assert report.details.unlabelled == 2 and report.details.examples_unlabelled == ["no idea"]
    # the export's budget takes turns over the labels: 2 problems = one number theory, one probability
    budget = {"problems": 2, "balance_by": "msc", "length_weight": 0}
    run_stage(
        "export",
        tmp_path / "c" / "kept",
        ExportConfig(select={"budget": budget}, tokenizer=None),
        tmp_path / "e",
    )
    sft = pl.read_parquet(tmp_path / "e" / "sft" / "train")
    assert sorted(msc[u] or "unknown" for u in sft["uid"]) in (
        ["11", "60"],
        ["11", "unknown"],
        ["60", "unknown"],
    )
    assert sft.height == 2 and len({msc[u] for u in sft["uid"]}) == 2


def test_export_balance_column_missing_at_run_time_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    traces(4, 1).write_parquet(tmp_path / "in" / "part-00000.parquet")
    config = ExportConfig(select={"budget": {"problems": 2, "balance_by": "msc"}}, tokenizer=None)
    with pytest.raises(ValueError, match=r"no such column.*classify"):
        run_stage("export", tmp_path / "in", config, tmp_path / "e")


def test_failed_requests_are_counted_and_said_not_read_as_replies(tmp_path, taxonomy, monkeypatch):
    """s1 at --teacher cpu: the MSC prompt outgrew the CPU model's context, every request failed and the
    report only showed empty replies. A failure is now counted, with its error, apart from the replies."""
    rows = traces(4, 1)
    (tmp_path / "in").mkdir()
    rows.write_parquet(tmp_path / "in" / "part-00000.parquet")
    with FakeOpenAI(answer_fn=by_topic, fail_prompts=("Problem 1",), fail_status=400) as fake:
        monkeypatch.setenv("FAKE_BASE_URL", fake.base_url)
        monkeypatch.setenv("FAKE_API_KEY", "sk-test")
        llm = {"model": "m", "n": 1, "base_url_env": "FAKE_BASE_URL", "api_key_env": "FAKE_API_KEY",
               "cache_dir": str(tmp_path / "cache"), "progress": False, "max_retries": 0}  # fmt: skip
        report = run_stage(
            "classify", tmp_path / "in", ClassifyConfig(llm=llm, taxonomy=taxonomy), tmp_path / "c"
        )
    d = report.details
    assert (report.rows_in, report.rows_kept, d.labelled, d.unlabelled) == (4, 4, 2, 2)
    assert d.failed == 1 and len(d.errors) == 1 and "upstream failure" in d.errors[0]
    assert d.examples_unlabelled == ["no idea"], "the failed request is not an empty reply"
