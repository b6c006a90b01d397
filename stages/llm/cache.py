"""The sample cache: every finished sample is committed the moment it arrives, so nothing is paid twice.

SQLite in WAL mode, one row per sample, keyed by a hash of (model, prompt hash, sampling
parameters, sample index). Commits survive `kill -9` (the WAL is written before `put` returns;
`synchronous=NORMAL` only risks the last commits on a power loss). The raw output is stored, not
the parsed one, so a better parser can be applied later without paying for the samples again.
Failures are not cached: a re-run retries them. The same file holds the Batch API ledger
(stages/llm/batch.py): which items went into which batch, and the batch and file ids.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 500  # keys per SELECT ... IN (...), under SQLite's variable limit


def sample_key(model: str, prompt_hash: str, sampling: dict[str, Any], sample: int) -> str:
    payload = json.dumps([model, prompt_hash, sampling, sample], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


class SampleCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS samples (key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)"
        )

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Commit one sample now (first write wins: a sample is never replaced)."""
        self._db.execute(
            "INSERT OR IGNORE INTO samples (key, record, created) VALUES (?, ?, ?)",
            (key, json.dumps(record, ensure_ascii=False), time.time()),
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(keys)
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, record in self._db.execute(
                f"SELECT key, record FROM samples WHERE key IN ({marks})", chunk
            ):
                found[key] = json.loads(record)
        return found

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SampleCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
