"""The MinHash baselines of benchmarks/dedup.py, each run the way its users run it, in a process of
its own (so its wall time and memory are its own):

    python benchmarks/dedup_baselines.py datasketch|rensa CORPUS.jsonl PAIRS.npy

Reads the JSONL, finds near-duplicates at Jaccard 0.8 (128 permutations, word 5-grams of the
lower-cased whitespace tokens), query then insert: a row whose query finds an earlier row is a
duplicate of it. Writes the (duplicate row, kept row) pairs as an (n x 2) int64 .npy.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLD, NUM_PERM, NGRAM = 0.8, 128, 5


def word_ngrams(text: str, n: int = NGRAM) -> list[str]:
    words = text.lower().split()
    return [" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))]


def read_texts(corpus: Path) -> list[str]:
    with corpus.open(encoding="utf-8") as f:
        return [json.loads(line)["problem"] for line in f]


def query_then_insert(lsh: Any, minhashes: Iterable[Any]) -> list[tuple[int, int]]:
    """The usual dedup loop: a row whose query finds an earlier row is its duplicate, else it is inserted."""
    pairs = []
    for i, m in enumerate(minhashes):
        found = lsh.query(m)
        if found:
            pairs.append((i, min(found)))
        else:
            lsh.insert(i, m)
    return pairs


def datasketch_pairs(texts: list[str]) -> list[tuple[int, int]]:
    """MinHash.generator over byte-string shingles, MinHashLSH with the bands it picks for the threshold."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    shingled = ([s.encode("utf-8") for s in word_ngrams(t)] for t in texts)
    return query_then_insert(lsh, MinHash.generator(shingled, num_perm=NUM_PERM))


def rensa_pairs(texts: list[str]) -> list[tuple[int, int]]:
    """RMinHash per row, RMinHashLSH with 16 bands (its README's setting)."""
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)

    def minhashes() -> Iterator[RMinHash]:
        for text in texts:
            m = RMinHash(num_perm=NUM_PERM, seed=42)
            m.update(word_ngrams(text))
            yield m

    return query_then_insert(lsh, minhashes())


def main() -> None:
    tool, corpus, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    pairs = {"datasketch": datasketch_pairs, "rensa": rensa_pairs}[tool](read_texts(corpus))
    np.save(out, np.asarray(pairs, dtype=np.int64).reshape(-1, 2))


if __name__ == "__main__":
    main()
