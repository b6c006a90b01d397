"""numpy helpers the stages share."""

from __future__ import annotations

import numpy as np


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)` (sorted, distinct) by one sort and a mask: numpy 2.4's `np.unique` took
    10.9 s on 8M int64 here where this takes 0.66 s (the near-dup stages' candidate pairs and rows)."""
    ordered = np.sort(np.asarray(values), kind="stable")
    if ordered.size == 0:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def first_of_each(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_index=True)`: the distinct values, sorted, and where each first occurs."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]] if ordered.size else np.zeros(0, dtype=bool)
    return ordered[first], order[first]
