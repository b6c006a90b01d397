"""Near-duplicate removal on a constructed set: real MATH problems plus controlled edits.

Near-duplicates (must collapse): reworded instruction, renumbered ("Problem 12."), reformatted
LaTeX ($..$ -> \\(..\\), \\frac -> \\dfrac, spacing, x^2 -> x^{2}), and all three at once.
Non-duplicates sharing a template (must both stay): one number changed, "Compute $\\binom{8}{4}$"
vs "Compute $\\binom{9}{4}$". Precision and recall over pairs are printed and asserted per method.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import polars as pl
import pytest

from stages.collect import FieldMap
from stages.dedup import embedding, minhash
from stages.registry import run_stage
from stages.store import read_shards
from tests.conftest import collect_files, write_jsonl

VERB_SWAPS = {
    "Find": "Determine",
    "Compute": "Calculate",
    "What is": "Compute",
    "Determine": "Find",
    "Evaluate": "Compute",
    "Calculate": "Find",
}
VERB = re.compile(r"\b(" + "|".join(VERB_SWAPS) + r")\b")
TEMPLATES = [
    (r"Compute $\binom{8}{4}$.", r"Compute $\binom{9}{4}$."),
    (r"Find the remainder when $2^{100}$ is divided by $7$.", r"Find the remainder when $2^{100}$ is divided by $11$."),
    (r"How many positive divisors does $360$ have?", r"How many positive divisors does $720$ have?"),
    (r"Given that $f(x) = x^k$ where $k > 0$, find the range of $f(x)$ on $[1, \infty)$.",
     r"Given that $f(x) = x^k$ where $k < 0$, find the range of $f(x)$ on $[1, \infty)$."),
]  # fmt: skip


def reword(text: str) -> str:
    return VERB.sub(lambda m: VERB_SWAPS[m.group(1)], text, count=1)


def renumber(text: str, rng: random.Random) -> str:
    return (
        rng.choice(
            [f"Problem {rng.randint(1, 40)}. ", f"{rng.randint(1, 40)}. ", f"Question {rng.randint(1, 9)}: "]
        )
        + text
    )


def reformat(text: str) -> str:
    text = re.sub(
        r"\$([^$]+)\$", lambda m: r"\(" + m.group(1).replace("=", " = ").replace("+", " + ") + r"\)", text
    )
    return text.replace(r"\frac", r"\dfrac").replace("^2", "^{2}")


def change_number(text: str, rng: random.Random) -> str:
    numbers = list(re.finditer(r"\d+", text))
    m = numbers[-1]
    return text[: m.start()] + str(int(m.group()) + rng.randint(1, 9)) + text[m.end() :]


def constructed_set(data: Path, near: int = 60, template: int = 40) -> list[dict]:
    """Rows with a `group` label: rows of one group are duplicates, of different groups are not."""
    rng = random.Random(0)
    with (data / "sources" / "deepscaler_train_math.jsonl").open(encoding="utf-8") as f:
        problems = [json.loads(line)["problem"] for line in f]
    usable = [
        p
        for p in problems
        if VERB.search(p) and re.search(r"\d", p) and 80 <= len(p) <= 400 and "[asy]" not in p
    ]
    bases = list(dict.fromkeys(usable))[: near + template]
    edits = [reword, lambda t: renumber(t, rng), reformat, lambda t: reformat(renumber(reword(t), rng))]
    rows = []
    for g, base in enumerate(bases[:near]):
        variant = edits[g % 4](base)
        rows += [
            {"problem": base, "group": g},
            {"problem": variant if variant != base else edits[3](base), "group": g},
        ]
    for g, base in enumerate(bases[near:], start=near):
        rows += [{"problem": base, "group": g}, {"problem": change_number(base, rng), "group": 10_000 + g}]
    for g, (a, b) in enumerate(TEMPLATES, start=20_000):
        rows += [{"problem": a, "group": g}, {"problem": b, "group": g + 100}]
    return rows


def pairs_of(labels: list) -> set[tuple[int, int]]:
    by: dict = {}
    for i, label in enumerate(labels):
        by.setdefault(label, []).append(i)
    return {p for members in by.values() for p in itertools.combinations(sorted(members), 2)}


def predicted_clusters(stage_dir: Path, problems: list[str]) -> list[str]:
    """Each input row's cluster (its keeper's uid), read back from the stage's kept/dropped shards."""
    kept = pl.concat(read_shards(stage_dir / "kept"))
    cluster = dict(zip(kept["problem"], kept["uid"], strict=True))
    for batch in read_shards(stage_dir / "dropped"):
        for text, detail in zip(batch["problem"], batch["drop_detail"], strict=True):
            cluster[text] = json.loads(detail)["duplicate_of"]
    return [cluster[p] for p in problems]


def precision_recall(rows: list[dict], stage_dir: Path) -> tuple[float, float]:
    truth = pairs_of([r["group"] for r in rows])
    found = pairs_of(predicted_clusters(stage_dir, [r["problem"] for r in rows]))
    hits = len(truth & found)
    return hits / max(len(found), 1), hits / len(truth)


@pytest.fixture(scope="module")
def constructed(shared_data, tmp_path_factory) -> tuple[list[dict], Path]:
    rows = constructed_set(shared_data)
    assert len({r["problem"] for r in rows}) == len(rows)
    root = tmp_path_factory.mktemp("constructed")
    collect_files([write_jsonl(root / "mix.jsonl", rows)], FieldMap(), root / "00-collect")
    return rows, root / "00-collect" / "kept"


def run_method(stage, config, input_dir: Path, out: Path) -> dict:
    return run_stage(stage, input_dir, config, out, force=True).model_dump(mode="json")


@pytest.mark.parametrize("check", ["estimate", "exact"])
def test_minhash_precision_recall(constructed, tmp_path, check):
    rows, collected = constructed
    report = run_method(
        minhash.MinhashDedup(), minhash.MinhashDedupConfig(check=check), collected, tmp_path / "minhash"
    )
    precision, recall = precision_recall(rows, tmp_path / "minhash")
    print(f"\nminhash (check={check}): precision {precision:.3f} recall {recall:.3f} on {len(rows)} rows")
    assert precision >= 0.95 and recall >= 0.9
    assert report["rows_in"] == report["rows_kept"] + report["rows_dropped"]


def test_math_normalisation_is_what_finds_reformatted_duplicates(constructed, tmp_path):
    rows, collected = constructed
    run_method(minhash.MinhashDedup(), minhash.MinhashDedupConfig(), collected, tmp_path / "norm")
    run_method(
        minhash.MinhashDedup(), minhash.MinhashDedupConfig(normalize_math=False), collected, tmp_path / "raw"
    )
    _, with_norm = precision_recall(rows, tmp_path / "norm")
    _, without = precision_recall(rows, tmp_path / "raw")
    print(f"\nminhash recall with math normalisation {with_norm:.3f}, without {without:.3f}")
    assert with_norm >= without + 0.2


def test_embedding_precision_recall(constructed, tmp_path):
    rows, collected = constructed
    config = embedding.EmbeddingDedupConfig(cache_dir=tmp_path / "cache", progress=False)
    report = run_method(embedding.EmbeddingDedup(), config, collected, tmp_path / "embedding")
    precision, recall = precision_recall(rows, tmp_path / "embedding")
    print(f"\nembedding: precision {precision:.3f} recall {recall:.3f} on {len(rows)} rows")
    assert precision >= 0.95 and recall >= 0.9
    details = report["details"]
    # the number guard, not the encoder, keeps the template pairs apart: MiniLM puts them above 0.95
    assert details["pairs"]["rejected_by_number_guard"] >= 1
    unguarded = embedding.EmbeddingDedupConfig(
        cache_dir=tmp_path / "cache", progress=False, number_guard=False
    )
    again = run_method(embedding.EmbeddingDedup(), unguarded, collected, tmp_path / "unguarded")
    assert again["details"]["params"]["texts_encoded"] == 0  # all from the on-disk cache
    precision_off, _ = precision_recall(rows, tmp_path / "unguarded")
    print(f"embedding without the number guard: precision {precision_off:.3f}")
    assert precision_off < precision


def test_dropped_rows_carry_evidence_and_keepers_merge_sources(tmp_path):
    a = [
        {
            "problem": r"Find the value of $x$ if $3x + 7 = 22$ and $x$ is an integer greater than zero.",
            "answer": None,
        }
    ]
    b = [
        {"problem": r"Determine the value of \(x\) if \(3x+7=22\) and \(x\) is an integer greater than zero.", "answer": "5"},
        {"problem": r"Find the value of $x$ if $3x + 7 = 25$ and $x$ is an integer greater than zero.", "answer": "6"},
    ]  # fmt: skip
    files = [write_jsonl(tmp_path / "a.jsonl", a), write_jsonl(tmp_path / "b.jsonl", b)]
    collect_files(files, FieldMap(), tmp_path / "00-collect")
    report = run_method(
        minhash.MinhashDedup(),
        minhash.MinhashDedupConfig(),
        tmp_path / "00-collect" / "kept",
        tmp_path / "mh",
    )
    assert (report["rows_in"], report["rows_kept"], report["rows_dropped"]) == (3, 2, 1)
    kept = pl.concat(read_shards(tmp_path / "mh" / "kept"))
    dropped = pl.concat(read_shards(tmp_path / "mh" / "dropped"))
    keeper = kept.filter(pl.col("answer") == "5")  # the policy prefers the row with an answer
    assert keeper.height == 1 and sorted(keeper["sources"][0]) == ["a", "b"]
    detail = json.loads(dropped["drop_detail"][0])
    assert detail["duplicate_of"] == keeper["uid"][0] and detail["method"] == "minhash"
    assert detail["similarity"] >= 0.8 and dropped["drop_reason"][0] == "duplicate"
    d = report["details"]
    assert d["source_matrix"]["counts"][d["source_matrix"]["sources"].index("b")][0] == 1
    assert d["largest_clusters"][0]["size"] == 2


def test_empty_and_missing_texts(tmp_path):
    rows = [{"problem": "x"}, {"problem": "x."}, {"problem": "Find $y$."}]
    collect_files([write_jsonl(tmp_path / "a.jsonl", rows)], FieldMap(), tmp_path / "00-collect")
    for fn, config in [(minhash.MinhashDedup(), minhash.MinhashDedupConfig(unit="char", ngram=3))]:
        report = run_method(fn, config, tmp_path / "00-collect" / "kept", tmp_path / "out")
        assert report["rows_in"] == report["rows_kept"] + report["rows_dropped"] == 3
