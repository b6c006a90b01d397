"""N-gram overlap: benchmark n-grams hashed to 64-bit ints, indexed once, probed with numpy.

Why this shape: a million training rows hold ~10^8 n-grams, far too many for Python sets or loops.
Words are hashed by polars, n-grams are rolling polynomial hashes over those (n vectorised passes),
and membership is a bitmap pre-filter (one gather per n-gram) followed by `searchsorted` on the
few candidates. Only the rare hits ever become Python objects.

Boilerplate ("m and n are relatively prime positive integers find m n") is an n-gram shared by many
*different* problems; such n-grams are left out of the index (shared by many benchmark items) or out of
the score (shared by many training texts, or by benchmark items and training texts together), so that
a training row that only shares phrasing is not flagged, while a row that shares the problem's own
words still is. Coverage is measured over an item's remaining (non-boilerplate) n-grams.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

WORD_SEED = 0x5EED
PRIME = np.uint64(0x100000001B3)  # FNV prime: odd, so the polynomial hash is a bijection per step
WHOLE_SEED = 0x9E37
# one-letter words are variable names; single digits are numbers and keep their identity
LETTER = r"^[a-z]$"
BITMAP_BITS = 24  # 16 MiB: ~3% false candidates for 431k indexed n-grams
PRIME_INVERSE = np.uint64(pow(int(PRIME), -1, 1 << 64))
# An item's whole word sequence found inside a row (a problem wrapped in an instruction) counts as a
# whole-text match (position -2), for items of n..MAX_CONTAINED words, and of MIN_CONTAINED..n-1 words
# when one of them is a number ("compute binom 8 6"; "add two numbers" is a phrase); longer items are
# found by coverage anyway.
CONTAINED = -2
MIN_CONTAINED = 3
MAX_CONTAINED = 64


@dataclass
class Tokens:
    """Every row's words hashed, flat, with each word's row and position in it."""

    tokens: np.ndarray  # uint64 word hashes, rows one after another
    lengths: np.ndarray  # int64 words per row
    starts: np.ndarray  # int64 flat index of each row's first word
    row_of: np.ndarray  # int32
    pos_of: np.ndarray  # int64

    @classmethod
    def of(cls, words: pl.Series, fold_letters: bool) -> Tokens:
        lengths = words.list.len().fill_null(0).to_numpy().astype(np.int64)
        flat = words.list.explode(keep_nulls=False, empty_as_null=False)
        if fold_letters:
            flat = pl.select(
                pl.when(flat.str.contains(LETTER)).then(pl.lit("_v")).otherwise(flat)
            ).to_series()
        tokens = flat.hash(WORD_SEED).to_numpy()
        starts = np.cumsum(lengths) - lengths
        row_of = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
        return cls(tokens, lengths, starts, row_of, np.arange(len(tokens), dtype=np.int64) - starts[row_of])

    @cached_property
    def _prefix(self) -> tuple[np.ndarray, np.ndarray]:
        longest = int(self.lengths.max(initial=0)) + 1
        with np.errstate(over="ignore"):
            prefix = np.zeros(len(self.tokens) + 1, np.uint64)
            np.cumsum(self.tokens * _powers(PRIME, longest)[self.pos_of], out=prefix[1:])
        return prefix, _powers(PRIME_INVERSE, longest)

    def sequence_hashes(self, at: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Hash of the `length` words from flat index `at` on (same row), the same wherever the run
        sits: sum of word hash * PRIME^offset. Prefix sums make every (start, length) one subtraction."""
        prefix, inverse = self._prefix
        with np.errstate(over="ignore"):
            return (prefix[at + length] - prefix[at]) * inverse[self.pos_of[at]]


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """base^0 .. base^(count-1), modulo 2^64."""
    with np.errstate(over="ignore"):
        return np.concatenate(
            [np.ones(1, np.uint64), np.cumprod(np.full(max(count - 1, 0), base, np.uint64))]
        )


def ngram_keys(
    words: pl.Series | Tokens, n: int, fold_letters: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, row, position) of every word n-gram of every row, plus one key for the whole text
    (position -1): short problems (fewer than n words) are compared as a whole, and verbatim copies
    match even when all their n-grams are boilerplate.

    `fold_letters` hashes every one-letter word (not digit) alike: variable names carry no identity ("m and n are
    relatively prime" is the same phrase as "p and q are relatively prime"), which both unifies
    boilerplate so that it is recognised as such and catches copies with renamed variables."""
    t = words if isinstance(words, Tokens) else Tokens.of(words, fold_letters)
    tokens, lengths, row_of, pos_of = t.tokens, t.lengths, t.row_of, t.pos_of
    m = len(tokens) - n + 1
    if m > 0:
        keys = _rolling(tokens, n)
        valid = pos_of[:m] <= (lengths[row_of[:m]] - n)
        long_keys, long_rows, long_pos = keys[valid], row_of[:m][valid], pos_of[:m][valid].astype(np.int32)
    else:
        long_keys = np.empty(0, np.uint64)
        long_rows = long_pos = np.empty(0, np.int32)

    # the whole text as one more key (position -1): verbatim copies match whatever the boilerplate;
    # the row's sequence hash, mixed with its length
    whole = np.flatnonzero(lengths > 0)
    with np.errstate(over="ignore"):
        sums = t.sequence_hashes(t.starts[whole], lengths[whole])
        whole_keys = (sums ^ np.uint64(WHOLE_SEED)) * PRIME + lengths[whole].astype(np.uint64)
    return (
        np.concatenate([long_keys, whole_keys]),
        np.concatenate([long_rows, whole.astype(np.int32)]),
        np.concatenate([long_pos, np.full(len(whole), -1, np.int32)]),
    )


def _rolling(tokens: np.ndarray, n: int) -> np.ndarray:
    """The rolling hash of every run of n words from each flat position (runs may cross rows: callers
    check that a run fits its row)."""
    m = len(tokens) - n + 1
    if m <= 0:
        return np.empty(0, np.uint64)
    keys = tokens[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            keys *= PRIME
            keys += tokens[j : j + m]
    return keys


def _matches(sorted_keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query index, entry index) of every entry of `sorted_keys` equal to a query key."""
    lo = np.searchsorted(sorted_keys, query, "left")
    counts = np.searchsorted(sorted_keys, query, "right") - lo
    hit = np.flatnonzero(counts > 0)
    lo, counts = lo[hit], counts[hit]
    # expand each query's run [lo, lo + count) of entries
    at = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    return np.repeat(hit, counts), at


def _bitmap(keys: np.ndarray, size: int = BITMAP_BITS) -> np.ndarray:
    """A membership pre-filter over the keys' top `size` bits: one byte per slot, so a lookup is one
    shift and one gather (measured faster than a packed bitmap's five passes)."""
    present = np.zeros(1 << size, dtype=bool)
    present[keys >> np.uint64(64 - size)] = True
    return present


def _in_bitmap(present: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return present[keys >> np.uint64(64 - (len(present).bit_length() - 1))]


@dataclass
class NgramIndex:
    """Sorted (key, item, position) triples of the benchmark items' non-boilerplate n-grams."""

    n: int
    fold_letters: bool
    keys: np.ndarray  # uint64, sorted; a key shared by k items appears k times
    items: np.ndarray  # int32 item number (row of the benchmark item frame)
    positions: np.ndarray  # int32 word position of the n-gram in the item (-1: whole short text)
    item_total: np.ndarray  # int32 indexed n-grams per item (the denominator of coverage)
    boilerplate: np.ndarray  # uint64 sorted keys left out for being shared by too many items
    bits: np.ndarray
    key_df: np.ndarray  # int32 per entry: distinct benchmark problems (copy groups) holding the key
    item_len: np.ndarray  # int32 words per item
    item_sequence: np.ndarray  # uint64 per item: the hash of its whole word sequence (Tokens.sequence_hashes)
    item_numeric: np.ndarray  # bool per item: it has a number word
    item_anchor: np.ndarray  # uint64 per item: the rolling hash of its first MIN_CONTAINED words

    @classmethod
    def build(
        cls, words: pl.Series, groups: pl.Series, n: int, max_item_df: int, fold_letters: bool = True
    ) -> NgramIndex:
        """Index the items' n-grams. `groups` labels copies of one problem (e.g. MATH-500 inside MATH
        test) so they count once towards an n-gram's item frequency. That frequency is always counted
        with one-letter words folded: "m and n are relatively prime" and "p and q are relatively prime"
        are one stock phrase, whether or not matching itself folds letters."""
        tokens = Tokens.of(words, fold_letters)
        keys, rows, pos = ngram_keys(tokens, n, fold_letters)
        family = keys if fold_letters else ngram_keys(words, n, True)[0]
        frame = pl.DataFrame({"key": keys, "family": family, "item": rows, "pos": pos})
        frame = frame.unique(["key", "item"], keep="first")
        frame = frame.with_columns(pl.Series("group", groups.to_numpy()[frame["item"].to_numpy()]))
        df = frame.group_by("family").agg(pl.col("group").n_unique().alias("df"))
        frame = frame.join(df, on="family", how="left")
        whole = pl.col("pos") < 0
        common = frame.filter(~whole & (pl.col("df") > max_item_df))["key"].unique().sort()
        kept = frame.filter(whole | (pl.col("df") <= max_item_df)).sort("key", "item")
        key_arr = kept["key"].to_numpy()
        items = kept["item"].to_numpy().astype(np.int32)
        return cls(
            n=n,
            fold_letters=fold_letters,
            keys=key_arr,
            items=items,
            positions=kept["pos"].to_numpy().astype(np.int32),
            item_total=np.bincount(items[kept["pos"].to_numpy() >= 0], minlength=len(words)).astype(np.int32),
            boilerplate=common.to_numpy(),
            bits=_bitmap(key_arr),
            key_df=kept["df"].to_numpy().astype(np.int32),
            item_len=tokens.lengths.astype(np.int32),
            item_sequence=tokens.sequence_hashes(tokens.starts, tokens.lengths),
            item_anchor=np.concatenate(
                [_rolling(tokens.tokens, MIN_CONTAINED), np.zeros(MIN_CONTAINED, np.uint64)]
            )[tokens.starts],
            item_numeric=words.list.eval(pl.element().str.contains("^[0-9]"))
            .list.any()
            .fill_null(False)
            .to_numpy(),
        )

    ARRAYS = (
        "keys",
        "items",
        "positions",
        "item_total",
        "boilerplate",
        "key_df",
        "item_len",
        "item_sequence",
        "item_numeric",
        "item_anchor",
    )

    def save(self, path: Path) -> None:
        """The index as one .npz (the pre-filter is rebuilt on load: cheaper than reading 16 MiB)."""
        arrays = {name: getattr(self, name) for name in self.ARRAYS}
        np.savez(path, n=np.int64(self.n), fold_letters=np.bool_(self.fold_letters), **arrays)

    @classmethod
    def load(cls, path: Path) -> NgramIndex:
        with np.load(path) as data:
            arrays = {name: data[name] for name in cls.ARRAYS}
            n, fold = int(data["n"]), bool(data["fold_letters"])
        return cls(n=n, fold_letters=fold, bits=_bitmap(arrays["keys"]), **arrays)

    def totals_without(self, keys: np.ndarray) -> np.ndarray:
        """Indexed n-grams per item once `keys` (sorted uint64; training boilerplate) are left out."""
        if len(keys) == 0:
            return self.item_total
        at = np.searchsorted(keys, self.keys).clip(max=len(keys) - 1)
        dropped = (keys[at] == self.keys) & (self.positions >= 0)
        return self.item_total - np.bincount(self.items[dropped], minlength=len(self.item_total)).astype(
            np.int32
        )

    def probe(self, words: pl.Series) -> pl.DataFrame:
        """Every (row, item, key, item position) where a row's n-gram is an indexed item n-gram, plus
        (row, item, item sequence hash, CONTAINED) where the row holds the item's whole word sequence."""
        tokens = Tokens.of(words, self.fold_letters)
        keys, rows, row_pos = ngram_keys(tokens, self.n, self.fold_letters)
        maybe = _in_bitmap(self.bits, keys)
        keys, rows, row_pos = keys[maybe], rows[maybe], row_pos[maybe]
        query, at = _matches(self.keys, keys)
        found = pl.DataFrame(
            {"row": rows[query], "item": self.items[at], "key": keys[query], "pos": self.positions[at]},
            schema={"row": pl.Int64, "item": pl.Int32, "key": pl.UInt64, "pos": pl.Int32},
        )
        contained = self._contained(tokens, found, row_pos[query])
        return pl.concat([found, contained]).unique(["row", "item", "key"])

    def _contained(self, tokens: Tokens, found: pl.DataFrame, row_pos: np.ndarray) -> pl.DataFrame:
        """(row, item) where the row holds the item's whole word sequence: for items of n words or
        more, checked where a shared n-gram puts the item's start; shorter items by their hash."""
        rows, items, item_pos = (found[c].to_numpy() for c in ("row", "item", "pos"))
        length = self.item_len[items].astype(np.int64)
        start = row_pos.astype(np.int64) - item_pos
        ok = (item_pos >= 0) & (length <= MAX_CONTAINED) & (start >= 0)
        ok &= start + length <= tokens.lengths[rows]
        rows, items, start, length = rows[ok], items[ok], start[ok], length[ok]
        same = tokens.sequence_hashes(tokens.starts[rows] + start, length) == self.item_sequence[items]
        pairs = [(rows[same], items[same])]
        # short items: where a row's 3-word window is a short item's first three words, compare the
        # sequence hash of the item's length there
        short = np.flatnonzero(
            (self.item_len >= MIN_CONTAINED) & (self.item_len < self.n) & self.item_numeric
        )
        order = np.argsort(self.item_anchor[short])
        anchors, short = self.item_anchor[short][order], short[order]
        windows = _rolling(tokens.tokens, MIN_CONTAINED)
        maybe = np.flatnonzero(_in_bitmap(_bitmap(anchors, 16), windows))
        query, entry = _matches(anchors, windows[maybe])
        at, items = maybe[query], short[entry]
        length = self.item_len[items].astype(np.int64)
        fits = tokens.pos_of[at] + length <= tokens.lengths[tokens.row_of[at]]
        at, items, length = at[fits], items[fits], length[fits]
        same = tokens.sequence_hashes(at, length) == self.item_sequence[items]
        pairs.append((tokens.row_of[at[same]], items[same]))
        rows = np.concatenate([p[0] for p in pairs]).astype(np.int64)
        items = np.concatenate([p[1] for p in pairs]).astype(np.int32)
        return pl.DataFrame(
            {
                "row": rows,
                "item": items,
                "key": self.item_sequence[items],
                "pos": np.full(len(rows), CONTAINED, np.int32),
            },
            schema={"row": pl.Int64, "item": pl.Int32, "key": pl.UInt64, "pos": pl.Int32},
        )

    def boilerplate_starts(self, words: pl.Series) -> pl.DataFrame:
        """(item, pos) where each item (`words`: the items the index was built from) has a boilerplate n-gram."""
        keys, rows, pos = ngram_keys(words, self.n, self.fold_letters)
        if len(self.boilerplate) == 0 or len(keys) == 0:
            return pl.DataFrame(schema={"item": pl.Int32, "pos": pl.Int32})
        at = np.searchsorted(self.boilerplate, keys).clip(max=len(self.boilerplate) - 1)
        hit = (self.boilerplate[at] == keys) & (pos >= 0)
        return pl.DataFrame({"item": rows[hit].astype(np.int32), "pos": pos[hit].astype(np.int32)})

    def boilerplate_hits(self, words: pl.Series) -> np.ndarray:
        """Per row, how many of its n-grams are boilerplate (left out of the index): for the report."""
        keys, rows, _ = ngram_keys(words, self.n, self.fold_letters)
        if len(self.boilerplate) == 0 or len(keys) == 0:
            return np.zeros(len(words), np.int64)
        at = np.searchsorted(self.boilerplate, keys).clip(max=len(self.boilerplate) - 1)
        return np.bincount(rows[self.boilerplate[at] == keys], minlength=len(words))


def score_pairs(pairs: pl.DataFrame, index: NgramIndex, common_keys: pl.Series | None = None) -> pl.DataFrame:
    """Per (row, item): shared distinct n-grams, coverage of the item's n-grams (1 for a whole-text
    match), and the item positions of the shared ones (for the evidence). `common_keys` are boilerplate
    n-grams found through the training data: left out of both the shared count and the item's total."""
    item_total = index.item_total
    if common_keys is not None and common_keys.len():
        pairs = pairs.filter(~pl.col("key").is_in(common_keys.implode()))
        item_total = index.totals_without(np.sort(common_keys.to_numpy()))
    totals = pl.DataFrame({"item": np.arange(len(item_total), dtype=np.int32), "total": item_total})
    whole = pl.col("pos") < 0
    return (
        pairs.group_by("row", "item")
        .agg(
            (~whole).sum().alias("shared"),
            whole.any().alias("whole"),
            pl.col("pos").filter(~whole).sort().alias("positions"),
        )
        .join(totals, on="item", how="left")
        .with_columns(
            pl.when(pl.col("whole"))
            .then(1.0)
            .otherwise((pl.col("shared") / pl.col("total").clip(lower_bound=1)).clip(upper_bound=1.0))
            .alias("coverage")
        )
        .drop("total")
    )


def missing_numbers(
    candidates: pl.DataFrame,
    found: pl.DataFrame,
    row_numbers: pl.DataFrame,
    item_numbers: pl.DataFrame,
    item_starts: pl.DataFrame,
    item_len: np.ndarray,
    n: int,
    slack: float = 0.0,
    passage: int | None = None,
) -> pl.DataFrame:
    """Per candidate (row, item): how many of the item's numbers the row lacks (`missing`, 0 = none)
    and, when some are, which (`lacking`: the item's words, "w (k of m)" for repeats that fall short).

    `item_numbers` are the item's number tokens (item, pos, num, w), `row_numbers` the row's numbers
    (row, num, count), `found` the shared n-grams (row, item, pos) and `item_starts` the item's
    boilerplate n-gram starts (item, pos). A number token of the item is excused when it lies in a
    shared or boilerplate n-gram, or when the row lacks it because it sits in a passage of the item's
    second half that the row replaces altogether (`passage` or more words in a row shared with nothing:
    the same setup with another final question). Every other distinct number must occur in the row; its
    repeats may fall short by `slack` of the item's counted number tokens (a value written in the text
    and again in an [asy] label). A number replaced inside shared text is a changed number: another
    problem."""
    passage = passage or 2 * n
    pairs = candidates.select("row", "item").with_row_index("pair")
    tokens = pairs.join(item_numbers, on="item")
    have = row_numbers.rename({"count": "have"})
    tokens = tokens.join(have.select("row", "num", "have"), on=["row", "num"], how="left").with_columns(
        pl.col("have").fill_null(0)
    )
    excused = pl.DataFrame(schema={"pair": pl.UInt32, "pos": pl.Int32})
    if tokens.height:
        # word runs the row does not share: bounded by the nearest shared (or boilerplate) n-grams
        starts = pl.concat(
            [
                found.filter(pl.col("pos") >= 0).join(pairs, on=["row", "item"]).select("pair", "pos"),
                pairs.join(item_starts, on="item").select("pair", "pos"),
            ]
        )
        key = np.sort(
            starts["pair"].to_numpy().astype(np.int64) << 24 | starts["pos"].to_numpy().astype(np.int64)
        )
        pair = tokens["pair"].to_numpy().astype(np.int64)
        q = tokens["pos"].to_numpy().astype(np.int64)
        at = np.searchsorted(key, (pair << 24) | q, side="right")
        left = key[np.maximum(at - 1, 0)] if len(key) else np.full(len(q), -1, np.int64)
        has_left = (at > 0) & ((left >> 24) == pair)
        left_pos = np.where(has_left, left & ((1 << 24) - 1), -(10**9))
        covered = left_pos + n > q
        right = key[np.minimum(at, len(key) - 1)] if len(key) else np.zeros(len(q), np.int64)
        has_right = (at < len(key)) & ((right >> 24) == pair)
        length = item_len[tokens["item"].to_numpy()]
        run_start = np.where(has_left, left_pos + n, 0)
        run_end = np.where(has_right, right & ((1 << 24) - 1), length)
        replaced = (run_end - run_start >= passage) & (2 * run_start >= length)
        absent = tokens["have"].to_numpy() == 0
        excused = tokens.filter(pl.Series((absent & covered) | replaced)).select("pair", "pos")
    counted = tokens.join(excused, on=["pair", "pos"], how="anti")
    per_num = counted.group_by("pair", "num").agg(
        pl.len().alias("count"), pl.col("have").first(), pl.col("w").first()
    )
    label = pl.when(pl.col("have") == 0).then(pl.col("w"))
    label = label.otherwise(pl.format("{} ({} of {})", "w", "have", "count"))
    per_pair = per_num.group_by("pair").agg(
        (pl.col("have") == 0).sum().alias("absent"),
        (pl.col("count") - pl.col("have")).clip(lower_bound=0).sum().alias("short"),
        pl.col("count").sum().alias("total"),
        label.filter(pl.col("have") < pl.col("count")).sort().alias("lacking"),  # groups come in any order
    )
    missing = pl.when(pl.col("short") > (slack * pl.col("total")).floor()).then(pl.col("short"))
    missing = missing.otherwise(pl.col("absent")).fill_null(0).cast(pl.Int32)
    return (
        pairs.join(per_pair, on="pair", how="left")
        .with_columns(missing.alias("missing"))
        .select(
            "row", "item", "missing", pl.when(pl.col("missing") > 0).then(pl.col("lacking")).alias("lacking")
        )
    )


def evidence_spans(pairs: pl.DataFrame, words: pl.Series, n: int) -> pl.Series:
    """Per (item, positions) pair: the longest run of consecutive shared n-grams (the earliest of equal
    runs), as the item's words it covers; the whole item when no n-gram position is given (a
    whole-text or contained match)."""
    numbered = pairs.select(pl.int_range(pl.len()).alias("pair"), "item", "positions")
    runs = (
        numbered.explode("positions")
        .drop_nulls("positions")
        .with_columns((pl.col("positions") - pl.int_range(pl.len()).over("pair")).alias("run"))
        .group_by("pair", "run")
        .agg(pl.col("positions").min().alias("start"), pl.len().alias("length"))
        .sort(["pair", "length", "start"], descending=[False, True, False])
        .group_by("pair", maintain_order=True)
        .first()
    )
    item_words = words.gather(numbered["item"]).alias("words")
    spans = numbered.with_columns(item_words).join(runs, on="pair", how="left").sort("pair")
    span = pl.col("words").list.slice(pl.col("start"), pl.col("length") + n - 1)
    return spans.select(
        pl.when(pl.col("start").is_null())
        .then(pl.col("words"))
        .otherwise(span)
        .list.join(" ")
        .alias("evidence")
    ).to_series()
