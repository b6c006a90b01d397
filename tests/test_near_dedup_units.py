"""Building blocks of near-dup removal: math normalisation, LSH parameters, MinHash estimates,
exact Jaccard, union-find, reports and the `longcot dedup` command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from stages.dedup import clusters, minhash, plots, report
from stages.reports import figures
from stages.text import SHINGLE_TOKEN_PATTERN, math_text, number_key
from tests.conftest import shared_texts, write_jsonl

REPO = Path(__file__).resolve().parents[1]

SAME = [
    (r"Find $\dfrac{1}{2} + x^{2}$.", r"Determine \(\frac12+x^2\)?"),
    (r"Problem 12. Compute $a_{n}$ if $a_1 = 3$.", r"Calculate \[a_n\] if \(a_1=3\)"),
    (r"What is $3 \times 4$?", r"Find $3\times 4$."),
    (r"If $x \le 2$, evaluate $f(x)$.", r"If $x ≤ 2$, find $f(x)$."),
    (r"A shop sold 1,000 pens.", r"A shop sold 1000 pens."),
    (r"Let $\left( x \right)$ be $\text{ real }$.", r"Let $(x)$ be real."),
    (
        r"If $x \geqslant 2$ and $y ≠ 1$, find $\tbinom{4}{2}$.",
        r"If $x\ge 2$ and $y \ne 1$, find $\binom{4}{2}$.",
    ),
]
DIFFERENT = [
    (r"Compute $\binom{8}{4}$.", r"Compute $\binom{9}{4}$."),
    (r"Given $k > 0$, find $x$.", r"Given $k < 0$, find $x$."),
    (r"Find $x + 1$.", r"Find $x - 1$."),
    (r"Find the area of a circle of radius 3.", r"Find the area of a circle of radius 3.5."),
]


def normalised(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    frame = pl.DataFrame({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]})
    return frame.select(
        math_text(pl.col("a")).alias("a"),
        math_text(pl.col("b")).alias("b"),
        number_key(math_text(pl.col("a"))).alias("ka"),
        number_key(math_text(pl.col("b"))).alias("kb"),
    )


def test_math_text_merges_rewritings_and_keeps_numbers_apart():
    same = normalised(SAME)
    assert same["a"].to_list() == same["b"].to_list()
    different = normalised(DIFFERENT)
    assert all(a != b for a, b in different.select("a", "b").iter_rows())
    assert all(a != b for a, b in different.select("ka", "kb").iter_rows())  # the number guard separates them


def test_optimal_bands_matches_datasketch():
    lsh = pytest.importorskip("datasketch.lsh")
    for threshold, num_perm in [(0.8, 128), (0.5, 128), (0.9, 256), (0.7, 64)]:
        expected = lsh._optimal_param(threshold, num_perm, 0.5, 0.5)
        assert minhash.optimal_bands(threshold, num_perm) == expected, (threshold, num_perm)


def word(n: int) -> str:
    """A distinct letters-only token per integer (digits would be tokens of their own)."""
    return "".join(chr(97 + int(d)) for d in str(n))


def test_signatures_estimate_jaccard_and_exact_jaccard_is_exact():
    rng = np.random.default_rng(0)
    texts, truth = [], []
    for _ in range(60):
        shared = rng.integers(0, 10**6, 60)
        a, b = rng.integers(0, 10**6, rng.integers(0, 60)), rng.integers(0, 10**6, rng.integers(0, 60))
        left, right = set(np.r_[shared, a].tolist()), set(np.r_[shared, b].tolist())
        truth.append(len(left & right) / len(left | right))
        texts += [" ".join(map(word, left)), " ".join(map(word, right))]
    series = pl.Series(texts)
    keys, counts, _ = minhash.shingles(series, ngram=1)
    sig = minhash.MinHasher(256).signatures(keys, counts)
    src, dst = np.arange(0, len(texts), 2), np.arange(1, len(texts), 2)
    estimate = minhash.estimated_jaccard(sig, src, dst)
    error = estimate - np.asarray(truth)
    assert abs(error.mean()) < 0.02 and np.abs(error).max() < 0.15
    config = minhash.MinhashDedupConfig(ngram=1, normalize_math=False)
    owner = np.repeat(np.arange(len(texts)), counts)
    sets = minhash.ShingleSets(*_sets(keys, owner, len(texts)), np.arange(len(texts)))
    assert np.allclose(sets.jaccard(src, dst), truth)
    assert config.lsh_params() == minhash.optimal_bands(0.55, 128, 0.2)


def test_exact_jaccard_does_not_import_pandas():
    """pyarrow imports pandas (~0.5 s, on the driver's critical path) to check whether a NumPy array
    given to `pa.array` is a pandas Series; the shingle sets are built without asking."""
    code = (
        "import sys, numpy as np\n"
        "from stages.dedup.minhash import ShingleSets\n"
        "sets = ShingleSets(np.array([1, 2, 3, 2, 3, 4], dtype=np.uint64), np.array([3, 3]), np.array([5, 9]))\n"
        "assert sets.jaccard(np.array([5]), np.array([9])).tolist() == [0.5]\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "False"


def _sets(keys: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    packed = np.unique((owner.astype(np.int64) << 32) | keys.astype(np.int64))
    return packed & 0xFFFFFFFF, np.bincount(packed >> 32, minlength=n)


def test_ngram_keys_stay_inside_each_text():
    one, _, _ = minhash.shingles(pl.Series(["a b c d"]), ngram=3)
    two, counts, _ = minhash.shingles(pl.Series(["a b", "c d"]), ngram=3)
    assert counts.tolist() == [1, 1] and not set(two) & set(one)
    _, counts, _ = minhash.shingles(pl.Series(["", "a b c d e f"]), ngram=3)
    assert counts.tolist() == [0, 4]


def test_ngram_keys_match_a_plain_loop():
    rng = np.random.default_rng(3)
    lengths = rng.choice([0, 1, 2, 4, 5, 6, 30], size=300)
    hashes = rng.integers(0, 2**64, int(lengths.sum()), dtype=np.uint64)
    for ngram in (1, 3, 5):
        keys, counts = minhash.ngram_keys(hashes, lengths, ngram, seed=1)
        coeff = [int(c) for c in minhash._rng_u64(1, 1, ngram) | np.uint64(1)]
        expected, start = [], 0
        for n in lengths.tolist():
            tokens = [int(h) for h in hashes[start : start + n]]
            windows = [tokens[i : i + ngram] for i in range(n - ngram + 1)] or ([tokens] if n else [])
            for window in windows:
                key = sum(h * c for h, c in zip(window, coeff, strict=False)) % 2**64
                expected.append((key ^ (key >> 32)) & 0xFFFFFFFF)
            start += n
        assert keys.tolist() == expected
        assert counts.tolist() == [max(n - ngram + 1, 1) if n else 0 for n in lengths.tolist()]


def test_one_permutation_signatures_are_unbiased_for_short_texts():
    """Texts of 2-12 shingles leave most of the 128 bins empty before densification: the estimate must
    stay unbiased (the densified bins are what makes or breaks that)."""
    rng = np.random.default_rng(5)
    texts, truth = [], []
    for _ in range(400):
        shared = rng.choice(10**6, rng.integers(1, 8), replace=False)
        extra = rng.choice(10**6, rng.integers(0, 5) * 2, replace=False) + 10**6
        left, right = set(np.r_[shared, extra[::2]].tolist()), set(np.r_[shared, extra[1::2]].tolist())
        truth.append(len(left & right) / len(left | right))
        texts += [" ".join(map(word, left)), " ".join(map(word, right))]
    keys, counts, _ = minhash.shingles(pl.Series(texts), ngram=1)
    sig = minhash.MinHasher(128).signatures(keys, counts)
    estimate = minhash.estimated_jaccard(sig, np.arange(0, len(texts), 2), np.arange(1, len(texts), 2))
    assert abs((estimate - np.asarray(truth)).mean()) < 0.01
    assert (sig != 0xFFFFFFFF).all()


def test_densify_borrows_from_originally_filled_bins_along_shared_probes():
    empty = 0xFFFFFFFF
    raw = np.full((4, 16), empty, dtype=np.uint32)
    raw[0, [1, 7]] = [10, 70]
    raw[1, [1, 7]] = [10, 70]  # same filled bins and values as row 0: must densify identically
    raw[2, 3] = 30
    filled = minhash.densify(raw.copy(), np.array([True, True, True, False]))
    assert np.array_equal(filled[0], filled[1])
    assert set(filled[0].tolist()) == {10, 70} and filled[0, 1] == 10 and filled[0, 7] == 70
    assert (filled[2] == 30).all() and (filled[3] == empty).all()


def test_candidate_pairs_are_the_rows_sharing_a_band_bucket():
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 40, size=(200, 3)).astype(np.uint64)
    lone = rng.random(keys.shape) < 0.5
    keys[lone] = np.arange(lone.sum(), dtype=np.uint64) + 1000  # half the entries in no bucket
    src, dst = minhash.candidate_pairs(keys)
    assert (src < dst).all() and len(set(zip(src.tolist(), dst.tolist(), strict=True))) == src.size
    assert (keys[src] == keys[dst]).any(axis=1).all()  # every pair shares a bucket
    labels = clusters.connected_components(200, src, dst)
    for band in range(3):  # and every bucket ends up in one component
        for key in np.unique(keys[:, band]):
            rows = np.flatnonzero(keys[:, band] == key)
            assert (labels[rows] == labels[rows[0]]).all()
    assert minhash.candidate_pairs(np.zeros((0, 3), dtype=np.uint64))[0].size == 0


def test_connected_components_matches_a_plain_union_find():
    rng = random.Random(1)
    for n in (1, 50, 2000):
        edges = [(rng.randrange(n), rng.randrange(n)) for _ in range(n)]
        parent = list(range(n))

        def root(x: int, parent: list[int] = parent) -> int:
            while parent[x] != x:
                x = parent[x]
            return x

        for u, v in edges:
            parent[max(root(u), root(v))] = min(root(u), root(v))
        expected = [root(i) for i in range(n)]
        src, dst = (np.array([e[i] for e in edges], dtype=np.int64) for i in (0, 1))
        assert clusters.connected_components(n, src, dst).tolist() == expected


def test_bucket_edges_join_equal_keys_only():
    src, dst = clusters.bucket_edges(np.array([5, 1, 5, 2, 5, 1], dtype=np.uint64))
    assert sorted(zip(src.tolist(), dst.tolist(), strict=True)) == [(0, 2), (0, 4), (1, 5)]


def test_known_similarity_finds_candidate_pairs_in_either_order():
    src, dst = clusters.unique_edges(np.array([7, 1, 4, 2]), np.array([3, 9, 1, 8]))
    similarity = (src * 100 + dst) / 1000  # a value that names its pair
    u, v = np.array([3, 9, 4, 5, 8]), np.array([7, 1, 1, 6, 2])
    out, known = clusters.known_similarity(src, dst, similarity, u, v)
    assert known.tolist() == [True, True, True, False, True]
    assert out[known].tolist() == [0.307, 0.109, 0.104, 0.208]
    assert np.isnan(out[3])
    none, known = clusters.known_similarity(src[:0], dst[:0], similarity[:0], u, v)
    assert not known.any() and np.isnan(none).all()


@pytest.fixture
def dedup_app() -> typer.Typer:
    from flows.cli import app

    return app


def test_cli_dedup_writes_stages_reports_and_html(tmp_path, dedup_app):
    base = "A bag has {n} red and 5 blue marbles.\u2028Two are drawn without replacement. Find the probability that both are red."
    rows = [{"question": base.format(n=n)} for n in range(3, 9)]
    rows += [
        {"question": "Problem 3. " + base.format(n=4).replace("Find", "Determine")},
        {"question": "Bad row"},
    ]
    files = [write_jsonl(tmp_path / "one.jsonl", rows[:4]), write_jsonl(tmp_path / "two.jsonl", rows[4:])]
    result = CliRunner().invoke(
        dedup_app, ["dedup", *map(str, files), "--out", str(tmp_path / "out"), "--field", "question"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "01-exact_dedup" / "report.json").is_file()
    mh = json.loads((tmp_path / "out" / "02-minhash_dedup" / "report.json").read_text())
    assert mh["rows_dropped"] == 1 and mh["details"]["source_matrix"]["sources"] == ["one", "two"]
    page = (tmp_path / "out" / "dedup.html").read_text()
    assert "data:image/png;base64" in page and "Determine" in page
    drawn = sorted(p.name for p in (tmp_path / "out" / "02-minhash_dedup" / "plots").glob("*.png"))
    assert drawn == ["1-cluster_sizes.png", "2-similarity.png", "3-sources.png"]
    assert (tmp_path / "out" / "01-exact_dedup" / "plots").is_dir()  # no exact duplicates: nothing to draw
    console = Console(record=True, width=160)
    console.print(report.format_clusters(tmp_path / "out" / "02-minhash_dedup", n=3))
    shown = console.export_text()
    assert "KEPT" in shown and "Problem 3" in shown
    markdown = report.dedup_markdown(report.dedup_reports(tmp_path / "out"))
    assert "| 02-minhash_dedup | minhash |" in markdown

    bad = CliRunner().invoke(
        dedup_app, ["dedup", str(files[0]), "--out", str(tmp_path / "x"), "--method", "fuzzy"]
    )
    assert bad.exit_code == 1 and "unknown method fuzzy" in bad.output and "Traceback" not in bad.output


def test_shingling_skips_only_rewrites_that_change_no_token(shared_data):
    """MinHash shingles `math_text(spacing=False)` and takes its number keys from the tokens: on every
    real text, the tokens are those of the full `math_text`, and two texts get the same number key
    exactly when their `number_key` strings are equal."""
    texts = shared_texts(shared_data).to_frame()
    tokens = pl.col("text").str.extract_all(SHINGLE_TOKEN_PATTERN)
    full = texts.select(math_text(pl.col("text"))).select(tokens, number_key(pl.col("text")).alias("key"))
    short = texts.select(math_text(pl.col("text"), spacing=False))
    assert texts.height > 50_000 and full["key"].n_unique() > 1_000
    assert full["text"].equals(short.select(tokens).to_series())
    keys = full.with_columns(number=minhash.shingles(short.to_series(), 5).numbers)
    assert keys.group_by("key").agg(pl.col("number").n_unique())["number"].max() == 1
    assert keys.group_by("number").agg(pl.col("key").n_unique())["key"].max() == 1


def test_cluster_size_bins_double_and_keep_every_cluster():
    hist = {str(size): size % 7 + 1 for size in range(1, 300)}
    labels, counts = plots.size_bins(hist)
    assert labels[:5] == ["1", "2", "3-4", "5-8", "9-16"] and labels[-1] == "257-512"
    assert sum(counts) == sum(hist.values())
    for label, count in zip(labels, counts, strict=True):
        low, _, high = label.partition("-")
        inside = [n for s, n in hist.items() if int(low) <= int(s) <= int(high or low)]
        assert count == sum(inside), label


def test_report_embeds_the_plots_the_stage_drew(tmp_path, monkeypatch):
    """The plots are drawn once, in the background while the shards are written; the HTML embeds
    those files (a stage written without them is drawn on the spot)."""
    details = {"cluster_size_histogram": {"2": 5, "3": 1}, "threshold": 0.8, "method": "minhash"}
    stage = tmp_path / "02-minhash_dedup"
    stage.mkdir()

    class Done(report.Details):
        cluster_size_histogram: dict[str, int]

    plots.start_plots(Done(cluster_size_histogram=details["cluster_size_histogram"]), stage).result()
    png = (stage / plots.PLOTS_DIR / "1-cluster_sizes.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    monkeypatch.setattr(report, "plot_pngs", lambda d: pytest.fail("drawn again"))
    assert report._plots(stage, details) == [figures.img(png)]
    monkeypatch.undo()
    assert len(report._plots(tmp_path / "older-stage", details)) == 1
