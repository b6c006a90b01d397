"""Precision and recall of the n-gram rule on hand-labelled real pairs (tests/decontam_labels.json).

The labels name a training row (source file, 0-based line) and a benchmark item (registry name, id),
never texts: the texts are re-read from ../shared/data. The stage runs with its defaults on all seven
training sources at once (22,186 rows, so that training-side boilerplate counts are those of the
quickstart) against every registered benchmark, and each labelled pair counts as flagged when that
(row, benchmark item) is among the stage's hits. See docs/decontamination.md, "Labelled study".
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from stages.decontam import DecontamConfig
from stages.records import PROBLEM_SCHEMA, conform
from tests.conftest import decontaminated

LABELS = Path(__file__).with_name("decontam_labels.json")
MIN_PRECISION = 0.85
MIN_RECALL = 0.95


def training_rows(shared_data: Path, sources: dict[str, dict[str, str]]) -> pl.DataFrame:
    """Every row of the labelled sources: source name, line number, problem text, domain."""
    rows = []
    for name, spec in sources.items():
        text = (shared_data / "sources" / spec["file"]).read_text(encoding="utf-8")
        records = [json.loads(line) for line in text.split("\n") if line.strip()]
        rows += [(name, i, r[spec["field"]], spec["domain"]) for i, r in enumerate(records)]
    schema = {"source": pl.String, "line": pl.Int64, "problem": pl.String, "domain": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def flagged_pairs(shared_data: Path, work: Path, config: DecontamConfig | None = None) -> tuple[set, dict]:
    """(source, line, benchmark, benchmark_id) of every hit of the stage on all labelled sources."""
    spec = json.loads(LABELS.read_text())
    train = training_rows(shared_data, spec["sources"])
    shard = work / "in" / "kept"
    shard.mkdir(parents=True)
    frame = train.select("problem", "source", "domain").with_columns(
        pl.format("{}-{}", "source", train["line"]).alias("uid")
    )
    conform(frame, PROBLEM_SCHEMA).write_parquet(shard / "part-00000.parquet")
    config = config or DecontamConfig(benchmark_dir=shared_data / "benchmarks", max_report_hits=100_000)
    details = decontaminated(shard, config, work / "out")["details"]
    assert not details["hits_truncated"]
    where = train.select("source", "line").rows()
    hits = {(*where[h["row"]], h["benchmark"], h["benchmark_id"]) for h in details["hits"]}
    return hits, details


def score(labels: list[dict], hits: set) -> dict[str, float]:
    flagged = [(p["source"], p["row"], p["benchmark"], p["benchmark_id"]) in hits for p in labels]
    tp = sum(f and p["same"] for f, p in zip(flagged, labels, strict=True))
    fp = sum(f and not p["same"] for f, p in zip(flagged, labels, strict=True))
    fn = sum(not f and p["same"] for f, p in zip(flagged, labels, strict=True))
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
    }


@pytest.fixture(scope="module")
def labelled_run(shared_data, tmp_path_factory):
    return flagged_pairs(shared_data, tmp_path_factory.mktemp("labels"))


def test_labels_name_real_rows_and_items(shared_data):
    spec = json.loads(LABELS.read_text())
    pairs = spec["pairs"]
    assert len(pairs) >= 200 and sum(p["same"] for p in pairs) >= 60
    assert len({(p["source"], p["row"], p["benchmark"], p["benchmark_id"]) for p in pairs}) == len(pairs)
    train = training_rows(shared_data, spec["sources"])
    lines = Counter(train["source"].to_list())
    assert all(0 <= p["row"] < lines[p["source"]] for p in pairs)


def test_precision_and_recall_on_labelled_pairs(labelled_run):
    hits, details = labelled_run
    labels = json.loads(LABELS.read_text())["pairs"]
    result = score(labels, hits)
    print(
        f"\nlabelled pairs: {len(labels)} ({sum(p['same'] for p in labels)} same problem); "
        f"precision {result['precision']:.3f}, recall {result['recall']:.3f} "
        f"(tp {result['tp']}, fp {result['fp']}, fn {result['fn']}); "
        f"rows flagged {details['rows_flagged']:,} of {details['rows_in']:,}"
    )
    wrong = [
        f"{'FP' if p['same'] is False else 'FN'} {p['source']}:{p['row']} vs {p['benchmark']}:{p['benchmark_id']} "
        f"- {p['reason']}"
        for p in labels
        if ((p["source"], p["row"], p["benchmark"], p["benchmark_id"]) in hits) != p["same"]
    ]
    print("\n".join(wrong))
    assert result["precision"] >= MIN_PRECISION
    assert result["recall"] >= MIN_RECALL


def test_templates_with_other_numbers_are_not_flagged(labelled_run):
    """The quickstart's worst false positives before the number check: MATH train vs MATH test
    templates ("inscribed in triangle ABC if AB = 22, AC=12, BC=14" vs "AB = 10, AC = 17, BC = 21")."""
    hits, details = labelled_run
    assert ("deepscaler_math", 3262, "math_test", "1772") not in hits
    assert ("deepscaler_math", 3290, "math_test", "1772") not in hits
    mismatch = details["ngram_index"]["number_mismatch_rows"]
    assert mismatch > 100, mismatch  # rows that share a template with an item but not its numbers
