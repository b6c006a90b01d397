"""numpy helpers the stages share."""

from __future__ import annotations

import numpy as np
import polars as pl


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)` (sorted, distinct) by one sort and a mask. The sort is polars' (in threads):
    on the 2.8M candidate edges of a 1M-row MinHash run it takes 0.06 s where numpy's took 0.22 s,
    and numpy 2.4's own `np.unique` took 10.9 s on 8M int64 here."""
    values = np.asarray(values)
    if values.size == 0:
        return values.copy()
    ordered = pl.Series(values).sort().to_numpy()
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def first_of_each(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_index=True)`: the distinct values, sorted, and where each first occurs."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]] if ordered.size else np.zeros(0, dtype=bool)
    return ordered[first], order[first]
