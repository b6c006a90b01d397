"""Embedding and LLM-judge methods on constructed pairs (small: MiniLM encodes ~75 texts/s here)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from stages.decontam import DecontamConfig
from stages.decontam.judge import one_at_a_time
from stages.decontam.registry import parse_benchmark_file
from stages.store import read_shards
from tests.conftest import decontaminated, write_jsonl
from tests.test_decontam import _shards, hub_offline  # noqa: F401 (fixture)

pytest.importorskip("sentence_transformers")
pytestmark = pytest.mark.usefixtures("hub_offline")

BENCH = [
    "Cities $A$ and $B$ are $45$ miles apart. Alicia lives in $A$ and Beth lives in $B$. Alicia bikes towards $B$ "
    "at 18 miles per hour. Leaving at the same time, Beth bikes toward $A$ at 12 miles per hour. How many miles "
    "from City $A$ will they be when they meet?",
    "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b.$",
    "Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop afterwards. When she walks at "
    "a constant speed of $s$ kilometers per hour, the walk takes her 4 hours, including $t$ minutes spent in the "
    "coffee shop.",
]
REWORDED = [
    "Two towns A and B are 45 miles from each other. Alicia starts in A cycling toward B at 18 mph while Beth "
    "simultaneously starts in B cycling toward A at 12 mph. How far from A do they meet?",
    "Determine the total of every integer base b greater than 9 such that 17 written in base b divides 97 written "
    "in base b.",
]
LOOSE = "Each day Aya walks 9 km and then visits a café. Walking at s km/h, the whole outing lasts 4 hours, t minutes of which she spends in the café."
SAME_TOPIC = [
    "A train leaves a station at 60 miles per hour and a car follows two hours later at 80 miles per hour. After "
    "how many hours does the car catch the train?",
    "Find the number of positive integers n less than 1000 such that n written in base 7 is a palindrome.",
]


def _run(tmp_path, methods, judge=None, benchmark_dir=None):
    bench = write_jsonl(
        tmp_path / "bench.jsonl", [{"problem": p, "id": f"b{i}"} for i, p in enumerate(BENCH)]
    )
    config = DecontamConfig(
        methods=methods,
        benchmarks=["mini"],
        extra_benchmarks=[parse_benchmark_file(f"mini={bench}")],
        embedding={"cache_dir": tmp_path / "cache"},
        benchmark_dir=benchmark_dir,
    )
    return decontaminated(
        _shards(tmp_path, [*REWORDED, LOOSE, *SAME_TOPIC]), config, tmp_path / "out", judge=judge
    )


def test_embedding_flags_rewordings_not_same_topic(tmp_path, shared_data):
    # the whole registry is loaded for the n-gram statistics: only the audited "mini" is embedded, and
    # its hits still name its own items
    report = _run(tmp_path, ["ngram", "embedding"], benchmark_dir=shared_data / "benchmarks")
    hits = report["details"]["hits"]
    assert {(h["row"], h["benchmark_id"], h["method"]) for h in hits} == {
        (0, "b0", "embedding"),
        (1, "b1", "embedding"),
    }
    assert all(h["score"] >= 0.85 for h in hits)
    near = report["details"]["near_misses"]["embedding"]
    # the loose paraphrase, just under, shown with both texts
    example = near["examples"][0]
    assert near["count"] == 1 and example["benchmark_id"] == "b2" and example["rule"] == "below threshold"
    assert example["problem"] == LOOSE and example["benchmark_problem"].startswith("Every morning Aya")
    dropped = pl.concat(read_shards(tmp_path / "out" / "dropped"))
    assert json.loads(dropped["drop_detail"][0])["evidence"].startswith("Cities")
    kept = pl.concat(read_shards(tmp_path / "out" / "kept"))["problem"].to_list()
    false_positive_rate = sum(t not in kept for t in SAME_TOPIC) / len(SAME_TOPIC)
    assert false_positive_rate == 0
    print(f"\nembedding: false-positive rate on same-topic rows {false_positive_rate:.0%}")


def test_llm_judge_decides_candidates_below_the_threshold(tmp_path):
    asked = []

    def fake_judge(messages):
        asked.append(messages)
        return "True" if "café" in messages[0]["content"] else "False"

    report = _run(tmp_path, ["embedding", "llm"], judge=one_at_a_time(fake_judge))
    judged = report["details"]["judge"]
    assert judged["asked"] == len(asked) >= 1 and judged["same"] == 1
    llm_hits = [h for h in report["details"]["hits"] if h["method"] == "llm"]
    assert [(h["row"], h["benchmark_id"]) for h in llm_hits] == [(2, "b2")]
