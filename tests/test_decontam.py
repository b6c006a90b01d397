"""Decontamination units: normalisation, the n-gram index on constructed positives and negatives,
the registry, the stage contract, and the LLM judge with a fake backend."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from stages.decontam import DecontamConfig
from stages.decontam.config import JudgeConfig
from stages.decontam.judge import (
    judge_pairs,
    one_at_a_time,
    parse_verdict,
    resolve_backend,
)
from stages.decontam.ngram import NgramIndex, evidence_spans, score_pairs
from stages.decontam.reference import prepare_items
from stages.decontam.registry import RegistryError, load_benchmarks, parse_benchmark_file, registry, select
from stages.decontam.report import markdown_summary, render_section
from stages.decontam.text import numbers_expr, statement_expr, words_expr
from stages.llm import LLMError
from stages.records import PROBLEM_SCHEMA, conform
from stages.store import read_shards
from stages.text import uid_expr
from tests.conftest import decontaminated, write_jsonl

AIME_ITEM = (
    "Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop afterwards. When she walks "
    "at a constant speed of $s$ kilometers per hour, the walk takes her 4 hours, including $t$ minutes spent in "
    "the coffee shop. When she walks $s+2$ kilometers per hour, the walk takes her 2 hours and 24 minutes, "
    "including $t$ minutes spent in the coffee shop. Suppose Aya walks at $s+\\frac{1}{2}$ kilometers per hour. "
    "Find the number of minutes the walk takes her, including the $t$ minutes spent in the coffee shop."
)
BOILER_ITEM = (
    "Let $ABCD$ be a tetrahedron such that $AB=CD= \\sqrt{41}$, $AC=BD= \\sqrt{80}$, and $BC=AD= \\sqrt{89}$. "
    "The distance from $I$ to each face can be written as $\\frac{m \\sqrt n}{p}$, where $m$, $n$, and $p$ are "
    "positive integers, $m$ and $p$ are relatively prime, and $n$ is not divisible by the square of any prime. "
    "Find $m+n+p$."
)
OTHER_ITEMS = [
    f"Let $x$ and $y$ be positive reals with $x+y={k}$. The product $xy$ can be written as $\\frac{{m}}{{n}}$, "
    f"where $m$ and $n$ are relatively prime positive integers. Find $m+n$. Variant {k} of a stock ending."
    for k in range(12)
]
POSITIVES = {
    "verbatim": AIME_ITEM,
    "latex_and_numbers": AIME_ITEM.replace("$9$", "9")
    .replace("\\frac{1}{2}", "\\dfrac12")
    .replace("4 hours", "4.0 hours")
    .replace("$s+2$", "\\(s + 2\\)"),
    "new_final_question": AIME_ITEM.rsplit("Suppose", 1)[0] + "Find the speed $s$ in meters per second.",
}
NEGATIVES = {
    "same_topic": "Aya walks to school at 4 kilometers per hour and runs back at 10 kilometers per hour. "
    "The round trip takes 42 minutes. How far is the school in kilometers?",
    "boilerplate": "A bag holds 5 red and 7 blue marbles and two are drawn without replacement. The probability "
    "that both are red can be written as $\\frac{m}{n}$, where $m$ and $n$ are relatively prime positive integers. "
    "Find $m+n$.",
}


def _words(texts: list[str]) -> pl.Series:
    return pl.DataFrame({"t": texts}).select(words_expr(pl.col("t"))).to_series()


def _index(items: list[str], n: int = 8, max_item_df: int = 3) -> NgramIndex:
    words = _words(items)
    return NgramIndex.build(words, pl.Series(items), n, max_item_df)


def _coverage(index: NgramIndex, texts: list[str]) -> dict[int, float]:
    words = _words(texts)
    scored = score_pairs(index.probe(words), index).filter(pl.col("item") == 0)
    return dict(scored.select("row", "coverage").iter_rows())


def test_words_ignore_formatting_only_differences():
    a = "Let $m$ be $\\dfrac{1}{2}$ of 1,000,000 and $x \\leq 3$, with \\left( a \\right)."
    b = "let m be \\frac{1}{2} of 1000000 and x \\le 3 , with (a)."
    wa, wb = (pl.select(words_expr(pl.lit(t))).item().to_list() for t in (a, b))
    assert wa == wb
    assert "1000000" in wa and "le" in wa


@pytest.mark.parametrize(
    ("written", "other"),
    [
        ("10^{9}", "10^9"),
        ("$10^{9}$", "10^9"),
        ("1e9", "10^9"),
        ("1e+9", "10^9"),
        ("10**9", "10^9"),
        ("10⁹", "10^9"),
        ("109", "10^9"),  # a lost caret, as scraped LeetCode constraints have it
        ("105", "10^5"),
        ("2 * 105", "2 \\times 10^{5}"),
        ("2e5", "2 \\cdot 10^5"),
    ],
)
def test_number_forms_normalise_equal(written, other):
    texts = pl.DataFrame({"t": [f"y is less than {written}.", f"y is less than {other}."]})
    mine, theirs = texts.select(numbers_expr(pl.col("t"))).to_series().to_list()
    assert mine == theirs and mine


@pytest.mark.parametrize(
    ("written", "other"), [("10^9", "10^8"), ("1e9", "1e8"), ("108", "10^9"), ("100", "10^9")]
)
def test_other_numbers_stay_different(written, other):
    texts = pl.DataFrame({"t": [f"y is less than {written}.", f"y is less than {other}."]})
    mine, theirs = texts.select(numbers_expr(pl.col("t"))).to_series().to_list()
    assert mine != theirs


def test_statement_strips_wrappers_examples_and_io():
    text = (
        "Please solve the programming task below using a self-contained code snippet in a markdown code block.\n\n"
        "You are given an array nums of positive integers and an integer k. Return the minimum number of operations.\n"
        "Example 1:\nInput: nums = [3,1,5,4,2], k = 2\nOutput: 4\nConstraints:\n1 <= nums.length <= 50"
    )
    statement = pl.select(statement_expr(pl.lit(text))).item()
    assert statement.startswith("You are given an array nums")
    assert "Example" not in statement and "Constraints" not in statement and "Please solve" not in statement


@pytest.mark.parametrize("kind", list(POSITIVES))
def test_ngram_flags_constructed_positives(kind):
    index = _index([AIME_ITEM, BOILER_ITEM, *OTHER_ITEMS])
    coverage = _coverage(index, [POSITIVES[kind]])
    assert coverage.get(0, 0.0) >= 0.3, f"{kind}: coverage {coverage}"


@pytest.mark.parametrize("kind", list(NEGATIVES))
def test_ngram_ignores_same_topic_and_boilerplate(kind):
    index = _index([AIME_ITEM, BOILER_ITEM, *OTHER_ITEMS])
    words = _words([NEGATIVES[kind]])
    scored = score_pairs(index.probe(words), index)
    flagged = scored.filter((pl.col("coverage") >= 0.3) & (pl.col("shared") >= 6) | pl.col("whole"))
    assert flagged.height == 0, scored


def test_boilerplate_shared_by_many_items_is_left_out_of_the_index():
    index = _index([AIME_ITEM, *OTHER_ITEMS], max_item_df=3)
    stock = pl.select(
        words_expr(pl.lit("where m and n are relatively prime positive integers. Find m+n."))
    ).to_series()
    assert index.probe(stock).height == 0
    assert len(index.boilerplate) > 0
    # with boilerplate filtering off, the same phrase is found in every variant
    assert _index([AIME_ITEM, *OTHER_ITEMS], max_item_df=100).probe(stock)["item"].n_unique() == len(
        OTHER_ITEMS
    )


def test_short_texts_are_compared_whole():
    index = _index(["Add two numbers.", AIME_ITEM])
    words = _words(["add  two NUMBERS", "add two numbers and print them"])
    scored = score_pairs(index.probe(words), index)
    assert scored.filter(pl.col("whole"))["row"].to_list() == [0]


def test_a_problem_wrapped_in_an_instruction_is_found_whole():
    """SFT sets wrap problems in instructions: a short item (fewer than n words, so no n-gram) or one
    whose n-grams are mostly stock phrasing is found when its whole word sequence is inside the row."""
    items = ["Compute $\\dbinom{31}{28}$.", "Write a python function to find the parity of a given number."]
    index = _index(items, n=6)
    wrap = "Solve the following problem step by step.\n\n{}\n\nPut your final answer in \\boxed{{}}."
    rows = [
        wrap.format(items[0]),
        wrap.format(items[1]),
        wrap.format("Compute $\\dbinom{31}{27}$."),
        "Compute 31 28",
    ]
    scored = score_pairs(index.probe(_words(rows)), index)
    assert set(scored.filter(pl.col("whole")).select("row", "item").iter_rows()) == {(0, 0), (1, 1)}


def test_evidence_is_the_longest_shared_run():
    words = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    pairs = pl.DataFrame(
        {"item": [0, 0, 0], "positions": [[0, 2, 3, 4], [], [1, 2, 5, 6]]},
        schema={"item": pl.Int32, "positions": pl.List(pl.Int32)},
    )
    spans = evidence_spans(pairs, pl.Series([words]), 3).to_list()
    assert spans == ["c d e f g", " ".join(words), "b c d e"]  # longest run; whole item; earliest of equal


# --- registry ---------------------------------------------------------------------------------------


def test_registry_names_every_issue_benchmark_with_hub_and_local_source():
    expected = {
        "math500",
        "math_test",
        "aime24",
        "aime25",
        "amc23",
        "amc22_23",
        "gsm8k",
        "olympiadbench",
        "minerva_math",
        "gpqa_diamond",
        "humaneval",
        "mbpp",
        "livecodebench_v5",
        "codeforces",
        "code_contests",
        "leetcode",
    }
    entries = registry()
    assert expected <= set(entries)
    assert all(e.hf is not None and e.file and e.preset for e in entries.values())


def test_unknown_benchmark_is_one_clear_error():
    with pytest.raises(RegistryError, match=r"unknown benchmark.*nope.*known: math500"):
        select(registry(), ["math500", "nope"])


def test_local_benchmarks_use_their_own_ids(shared_data, monkeypatch):
    monkeypatch.setenv("LONGCOT_BENCHMARK_DIR", str(shared_data / "benchmarks"))
    loaded = load_benchmarks(["math500", "mbpp", "gpqa_diamond"])
    ids = {b: g["benchmark_id"] for (b,), g in loaded.items.group_by("benchmark")}
    assert ids["math500"][0].startswith("test/") and ids["math500"].n_unique() == 500
    assert sorted(map(int, ids["mbpp"])) == list(range(11, 511))
    assert ids["gpqa_diamond"].to_list() == [str(i) for i in range(198)]  # no id field: the row number
    assert loaded.origins["mbpp"]["location"].endswith("mbpp_test.jsonl")


def test_custom_benchmark_file(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl", [{"q": "What is 2+2?", "id": "x1"}, {"q": "Name a prime.", "id": "x2"}]
    )
    entry = parse_benchmark_file(f"mine={path}:q")
    loaded = load_benchmarks(["mine"], extra=[entry])
    assert loaded.items["benchmark_id"].to_list() == ["x1", "x2"]
    assert loaded.items["problem"].to_list() == ["What is 2+2?", "Name a prime."]


# --- the stage ----------------------------------------------------------------------------------------


def _shards(tmp_path: Path, problems: list[str]) -> Path:
    frame = pl.DataFrame({"problem": problems, "source": "t", "domain": "math"}).with_columns(
        uid_expr(pl.col("problem")).alias("uid")
    )
    directory = tmp_path / "in" / "kept"
    directory.mkdir(parents=True)
    conform(frame, PROBLEM_SCHEMA).write_parquet(directory / "part-00000.parquet")
    return directory


def _bench(tmp_path: Path) -> list:
    rows = [{"problem": AIME_ITEM, "id": 60}, {"problem": BOILER_ITEM, "id": 61}]
    rows += [{"problem": t, "id": 100 + i} for i, t in enumerate(OTHER_ITEMS)]
    return [parse_benchmark_file(f"mini={write_jsonl(tmp_path / 'mini.jsonl', rows)}")]


@pytest.fixture
def hub_offline(monkeypatch):
    """The stage loads every registry benchmark for its statistics; here they cannot come from the Hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_stage_drops_positives_keeps_negatives_with_evidence(tmp_path, hub_offline):
    problems = [*POSITIVES.values(), *NEGATIVES.values()]
    config = DecontamConfig(benchmarks=["mini"], extra_benchmarks=_bench(tmp_path))
    report = decontaminated(_shards(tmp_path, problems), config, tmp_path / "out")
    assert report["rows_in"] == 5 and report["rows_dropped"] == 3
    dropped = pl.concat(read_shards(tmp_path / "out" / "dropped"))
    assert set(dropped["problem"]) == set(POSITIVES.values())
    assert set(dropped["drop_reason"]) == {"contaminated"}
    detail = json.loads(dropped["drop_detail"][0])
    assert {detail["benchmark"], detail["benchmark_id"], detail["method"]} == {"mini", "60", "ngram"}
    assert 0.3 <= detail["score"] <= 1 and "coffee shop" in detail["evidence"]
    hits = report["details"]["hits"]
    assert {h["row"] for h in hits} == {0, 1, 2}
    assert all({"row", "uid", "benchmark", "benchmark_id", "method", "score"} <= set(h) for h in hits)
    assert report["details"]["benchmarks"]["mini"]["items_found"] == 1
    # the registry benchmarks it could not load for its statistics are named, not silently left out
    missing = report["details"]["ngram_index"]["statistics"]["missing"]
    assert "math500" in missing and "HF_HUB_OFFLINE" in missing["math500"]


def test_near_miss_table_shows_rule_both_texts_and_why_kept(tmp_path, hub_offline):
    """A copy with one number changed is kept by the number check; the report says so, next to the
    real flag rule, with the training text and the benchmark text side by side."""
    changed = AIME_ITEM.replace("$9$-kilometer", "$7$-kilometer")
    config = DecontamConfig(benchmarks=["mini"], extra_benchmarks=_bench(tmp_path))
    details = decontaminated(_shards(tmp_path, [changed, NEGATIVES["same_topic"]]), config, tmp_path / "out")[
        "details"
    ]
    near = details["near_misses"]["ngram"]
    assert near["threshold"] == 0.3 and "coverage >= 0.3" in near["rule"] and "numbers" in near["rule"]
    first = near["examples"][0]
    assert first["rule"] == "number check" and first["score"] > 0.9
    assert "9" in first["reason"].rsplit(":", 1)[1]
    assert first["problem"].startswith("Every morning Aya goes for a $7$") and first["benchmark_problem"]
    html = render_section(details)
    markdown = markdown_summary(details)
    for text in (html, markdown):
        assert "coverage &gt;= 0.3" in text or "coverage >= 0.3" in text
        assert "number check" in text and "$7$-kilometer" in text and "$9$-kilometer" in text


def test_benchmark_index_is_cached_by_content(tmp_path, hub_offline):
    config = DecontamConfig(
        benchmarks=["mini"], extra_benchmarks=_bench(tmp_path), cache_dir=tmp_path / "cache"
    )
    problems = [*POSITIVES.values(), *NEGATIVES.values()]
    shards = _shards(tmp_path, problems)

    def run(name: str) -> dict:
        details = decontaminated(shards, config, tmp_path / name)["details"]
        return details

    first, second = run("first"), run("second")
    assert (first["ngram_index"]["cached"], second["ngram_index"]["cached"]) == (False, True)
    assert first["hits"] == second["hits"] and len(first["hits"]) == 3
    # another benchmark file content is another index: the new item is found
    bench = tmp_path / "mini.jsonl"
    bench.write_text(bench.read_text() + json.dumps({"problem": NEGATIVES["same_topic"], "id": 99}) + "\n")
    third = run("third")
    assert third["ngram_index"]["cached"] is False and len(third["hits"]) == 4


def test_min_shared_rule_flags_boilerplate_which_is_why_it_is_off(tmp_path, hub_offline):
    # the classic rule alone: no boilerplate filters and no number check (which would reject this row,
    # as the boilerplate row lacks the items' numbers)
    config = DecontamConfig(
        benchmarks=["mini"],
        extra_benchmarks=_bench(tmp_path),
        ngram={
            "min_shared": 1,
            "max_item_df": 100,
            "common_train_rows": None,
            "common_total": None,
            "match_numbers": False,
        },
    )
    report = decontaminated(_shards(tmp_path, [NEGATIVES["boilerplate"]]), config, tmp_path / "out")
    assert report["rows_dropped"] == 1


def test_llm_method_without_backend_is_not_configured():
    with pytest.raises(LLMError, match="not configured"):
        resolve_backend(JudgeConfig())


def test_judge_pairs_with_fake_backend():
    seen = []

    def fake(messages):
        seen.append(messages[0]["content"])
        train = messages[0]["content"].rsplit("TRAINING problem:", 1)[1]
        return "True - same problem" if "Aya" in train else "False. different"

    pairs = pl.DataFrame(
        {"train_text": [POSITIVES["verbatim"], NEGATIVES["boilerplate"]], "benchmark_text": [AIME_ITEM] * 2}
    )
    verdicts = judge_pairs(pairs, one_at_a_time(fake))
    assert verdicts["verdict"].to_list() == [True, False]
    assert "BENCHMARK problem" in seen[0] and AIME_ITEM[:40] in seen[0]
    assert parse_verdict("maybe") is None and parse_verdict("**Yes**") is True


def test_prepare_items_strips_code_statements(shared_data):
    loaded = load_benchmarks(["leetcode"], shared_data / "benchmarks")
    items = prepare_items(loaded)
    assert not items["match_text"].str.contains("Please solve the programming task").any()
    assert (items["match_text"].str.len_chars() < items["problem"].str.len_chars()).mean() > 0.9


def test_real_boilerplate_does_not_flag_but_the_problem_does(shared_data):
    """AIME 1983-2023 vs AIME 2024: the stock ending "m and p are relatively prime, and n is not divisible
    by the square of any prime" is shared, the problems are not (a false positive of min_shared=1)."""
    train = json.loads((shared_data / "sources" / "deepscaler_train_aime.jsonl").read_text().split("\n")[370])
    bench = {
        json.loads(line)["id"]: json.loads(line)["problem"]
        for line in (shared_data / "benchmarks" / "aime24.jsonl").read_text().split("\n")
        if line
    }
    reworded_latex = bench[65].replace("\\frac{m \\sqrt n}{p}", "\\dfrac{m\\sqrt{n}}{p}").replace("$", "")
    items = prepare_items(load_benchmarks(benchmark_dir=shared_data / "benchmarks"))
    index = NgramIndex.build(items["words"], items["group"], 8, 3)
    scored = score_pairs(index.probe(_words([train["problem"], reworded_latex])), index)
    target = items.with_row_index("item").filter(
        (pl.col("benchmark") == "aime24") & (pl.col("benchmark_id") == "65")
    )
    mine = scored.filter(pl.col("item") == target["item"][0])
    by_row = dict(mine.select("row", "coverage").iter_rows())
    assert by_row.get(0, 0.0) < 0.3 and by_row[1] >= 0.3, mine
    print(f"\nboilerplate row coverage {by_row.get(0, 0.0):.2f}; reformatted copy {by_row[1]:.2f}")
