"""The shared embedder: same vectors as SentenceTransformer.encode, an on-disk cache that spares the
model, and faiss search that agrees with brute force (flat and HNSW)."""

from __future__ import annotations

import numpy as np
import pytest

from stages import embed

TEXTS = [
    "Find the sum of all positive divisors of 360.",
    "Compute the number of ways to choose 4 of 8 books.",
    "Find the sum of all positive divisors of 360.",  # repeated: encoded once
    "A train leaves at 3 pm travelling at 60 miles per hour.",
    "Let $f(x) = x^2 + 1$. Find $f(3)$.",
    "",
]


@pytest.fixture(scope="module")
def model():
    return embed.load_model(embed.model_location(embed.DEFAULT_MODEL), "cpu")


def test_bundled_model_is_used_for_both_names():
    assert embed.model_location("all-MiniLM-L6-v2") == embed.model_location(
        "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert embed.model_location("some/other-model") == "some/other-model"
    assert embed.model_id("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"


def test_encode_matches_sentence_transformers_and_caches(tmp_path, model):
    first = embed.Embedder(cache_dir=tmp_path, device="cpu")
    vectors = first.encode(TEXTS, progress=False)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    direct = model.encode(TEXTS, normalize_embeddings=True)
    assert np.allclose(vectors, direct, atol=1e-5)
    assert first.encoded == len(set(TEXTS))

    again = embed.Embedder(cache_dir=tmp_path, device="cpu")
    assert np.array_equal(again.encode(TEXTS[::-1], progress=False), vectors[::-1])
    assert again.encoded == 0  # everything came from the on-disk cache
    assert len(again.cache) == len(set(TEXTS))


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCOT_CACHE_DIR", str(tmp_path))
    assert embed.Embedder().cache.path.parent == tmp_path / "embeddings"


def test_missing_extra_names_it():
    with pytest.raises(embed.MissingExtra, match=r"longcot\[embed\]"):
        embed._require("surely_not_an_installed_module")


def brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :k]


def test_knn_flat_is_exact_and_hnsw_is_close():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3000, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:200] + 0.05 * rng.normal(size=(200, 32)).astype(np.float32)
    expected = brute_force(base, queries, 5)
    scores, ids = embed.knn(base, queries, 5)
    assert np.array_equal(ids, expected)
    assert np.allclose(scores[:, 0], np.einsum("ij,ij->i", queries, base[ids[:, 0]]), atol=1e-5)
    _, approx = embed.knn(base, queries, 5, exact_limit=1000)  # above the limit: HNSW
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, expected, strict=True)])
    assert recall >= 0.95
    scores, ids = embed.knn(base[:0], queries, 3)
    assert (ids == -1).all()
