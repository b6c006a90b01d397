"""Text normalisation shared by uids, exact dedup and (later) shingling and embedding.

Two forms of a text:

- `canonical` — Unicode NFKC, lower case, runs of whitespace collapsed to one space. Words stay
  words, so n-gram methods can split it.
- `dedup key` — the canonical form with every space removed; the uid is its XXH3-64 hash. Two problems that differ only in
  Unicode form, case, line breaks or spacing (`\\frac {1} {2}` vs `\\frac{1}{2}`, `a + b` vs `a+b`)
  get the same key, hence the same uid, and collapse in exact dedup. The price is that `\\alpha x`
  and `\\alphax` also collide; real problem texts do not rely on that difference.

The uid is computed in one tight Python pass (str/bytes methods and the hash run in C; ASCII rows skip
NFKC), which measured faster than chained polars regex passes on 2 cores. The canonical text as a
column (`canonical_text`, what math normalisation starts from) is a polars expression: a regex pass
that matches only where whitespace needs rewriting is half the cost of the Python pass, with the
same output (tests/test_text.py checks both on every text of ../shared/data).
"""

from __future__ import annotations

import unicodedata
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa
from xxhash import xxh3_64_hexdigest


def canonical(text: str) -> str:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.lower().split())


def dedup_key(text: str) -> str:
    return canonical(text).replace(" ", "")


# ASCII whitespace as `str.split` sees it; deleting bytes is far cheaper than splitting into words.
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())


def uid_of(text: str) -> str:
    """The problem uid: 16 hex chars of XXH3-64 over the dedup key (UTF-8). XXH3 is a fixed,
    versioned algorithm, so uids are stable across machines and releases; for ASCII rows the key is
    built with bytes methods (no per-word objects), which halves the cost of a million uids."""
    if text.isascii():
        key = text.encode().lower().translate(None, _ASCII_SPACE)
    else:
        key = dedup_key(text).encode()
    return xxh3_64_hexdigest(key)


def _series_map(fn):
    def apply(texts: pl.Series) -> pl.Series:
        return pl.Series(texts.name, [None if t is None else fn(t) for t in texts], dtype=pl.String)

    return apply


# whitespace as `str.split` sees it: Unicode White_Space plus the separators \x1c-\x1f; rewritten only
# where it is not already one plain space
_SPACE_RUNS = r"[\s\x1c-\x1f]{2,}|[^\S ]|[\x1c-\x1f]"


def canonical_text(expr: pl.Expr) -> pl.Expr:
    """`canonical` as a polars expression (NFKC only on the rows that are not ASCII, as there)."""
    ascii_only = expr.str.len_bytes() == expr.str.len_chars()  # 20x cheaper than a regex for [^\x00-\x7f]
    folded = pl.when(ascii_only).then(expr).otherwise(expr.str.normalize("NFKC"))
    return folded.str.to_lowercase().str.replace_all(_SPACE_RUNS, " ").str.strip_chars(" ")


def uid_expr(problem: pl.Expr) -> pl.Expr:
    """`uid_of` as a polars expression."""
    return problem.map_batches(_series_map(uid_of), return_dtype=pl.String)


# --- math-aware normalisation for near-duplicate detection (shingling, embedding) -------------------
# Ordered rewrites applied after `canonical_text`: a (pattern, replacement) regex (replacements are
# literal except `$n`: a backslash in them is one backslash), or a {text: replacement} table of plain
# strings replaced in one Aho-Corasick pass (`str.replace_many`: each regex pass costs ~5 ms per 25k
# problems even where it matches nothing; a table of non-ASCII strings only searches non-ASCII rows).
# Each one removes a way of writing the same problem differently; none of them touches a number, so
# a changed number still makes a different text ("compute \binom{8}{4}" vs "compute \binom{9}{4}").
_MATH_REWRITES: list[tuple[str, str] | dict[str, str]] = [
    # leading problem labels: "problem 12.", "question 3:", "exercise 2.1)", "7.", "(3)", "a)"
    (r"^(?:(?:problem|question|exercise|example|task)\s*#?\s*\d+(?:\.\d+)*\s*[.:)\-]?\s*)", ""),
    (r"^(?:\(?\d{1,3}[.)]|\(\d{1,3}\)|\(?[a-h]\))\s+", ""),
    # math delimiters: $..$, $$..$$, \(..\), \[..\] all carry the same content
    (r"\\[()\[\]]|\$+", " "),
    # display variants of the same command (no \b after \dfrac: `\dfrac13` is common), signs
    (r"\\[dt](frac|binom)", r"\$1"),
    {"≤": r"\leq ", "≥": r"\geq ", "≠": r"\neq ", "±": r"\pm "},
    (r"\\(?:left|right|big|bigg|big[lr]|bigg[lr]|displaystyle|textstyle)\b", ""),
    # \le, \leqslant -> \leq; \ge, \geqslant -> \geq; \ne -> \neq
    (r"\\(?:([lg])e(?:qslant)?|(n)e)\b", r"\${1}${2}eq"),
    (r"\\(?:text|textbf|textit|mathrm|mathbf|operatorname|mbox)\s*\{([^{}]*)\}", " $1 "),
    # after \text{..}: `\text{1{,}000}` stays as it was
    {"°": r"^\circ"},
    {r"\%": "%", "{,}": ""},
    # spacing commands
    (r"\\[,;:! ]|\\q?quad\b|~", " "),
    # empty groups (AIME's `$ABCD_{}^{}$` artefacts) carry nothing
    (r"[_^]\s*\{\s*\}", ""),
    # single-token groups: x^{2} == x^2, a_{n} == a_n, \frac12 == \frac{1}{2}
    (r"\s*([\^_])\s*\{\s*(\w)\s*\}", "$1$2"),
    (r"\\frac\s*(\d)\s*(\d)", r"\frac{$1}{$2}"),
    # thousands separators: 1,000 == 1000 (twice, for 1,000,000)
    (r"(\d),(\d{3})\b", "$1$2"),
    (r"(\d),(\d{3})\b", "$1$2"),
    # instruction verbs that do not change the problem
    (r"\b(?:determine|compute|calculate|evaluate|work out|figure out|find out|what(?: is|'s))\b", "find"),
    (r"\bshow that\b", "prove that"),
]
# Spacing only: these change where the spaces are and trailing punctuation, never a shingle token
# (tokens skip whitespace and prose punctuation, and a space is only removed next to a sign), so
# shingling skips them (`math_text(spacing=False)`: a third of the normalisation's time).
_SPACING_REWRITES: list[tuple[str, str]] = [
    # spacing inside formulas (and around punctuation): `x + y = 3` == `x+y=3`, `x\leq 2` == `x \leq 2`
    # (written to match only where there is space to remove: a pattern that also matched every bare
    # sign or single space rewrote most of each text, 2-6x slower on 100k problems, same output)
    (r"\s*(\\[a-z]+)\s*", " $1 "),
    (r"\s+([=+\-*/<>()\[\],^_{}|:;])\s*|([=+\-*/<>()\[\],^_{}|:;])\s+", "$1$2"),
    (r"\s{2,}|[^\S ]", " "),
    (r"[\s.?!:;,]+$", ""),
]

# Tokens for shingling: LaTeX control words, runs of letters, numbers, single math symbols.
# Prose punctuation is dropped so "find x." and "find x?" shingle alike.
SHINGLE_TOKEN_PATTERN = r"\\[a-z]+|[^\W\d_]+|\d+(?:\.\d+)?|[^\s\w.,;:?!'\"]"
# What the number guard compares: numbers, and the signs that flip a problem (x > 0 vs x < 0).
_GUARD_PATTERN = r"\d+(?:\.\d+)?|\\(?:leq|geq|neq|pm|mp)\b|[<>+]"


def math_text(expr: pl.Expr, spacing: bool = True) -> pl.Expr:
    """Math-aware canonical form for near-duplicate detection (shingling, embedding): `canonical_text`
    plus unified math delimiters ($..$, \\(..\\), \\[..\\]), \\dfrac/\\tfrac -> \\frac, no spacing
    inside formulas, problem labels ("Problem 12.") removed and instruction verbs (determine,
    compute, what is, ...) mapped to `find`. Numbers are never changed. `spacing=False` leaves the
    spacing as it falls: the same shingle tokens (SHINGLE_TOKEN_PATTERN), for a third less work."""
    out = canonical_text(expr)
    for rewrite in _MATH_REWRITES + (_SPACING_REWRITES if spacing else []):
        if isinstance(rewrite, dict):
            out = _replace_table(out, rewrite)
        else:
            out = out.str.replace_all(*rewrite)
    return out.str.strip_chars() if spacing else out


def _replace_table(text: pl.Expr, table: dict[str, str]) -> pl.Expr:
    """One `replace_many` pass; a table of non-ASCII strings only on the rows that are not ASCII
    (1 vs 11.5 ms per 25k problems). A Series function, not `when/then`: that would name the whole
    expression so far three times, and an eager select evaluates each."""
    if any(key.isascii() for key in table):
        return text.str.replace_many(list(table), list(table.values()))

    def replace(texts: pl.Series) -> pl.Series:
        rows = (texts.str.len_bytes() != texts.str.len_chars()).arg_true()
        if rows.is_empty():
            return texts
        return texts.scatter(rows, texts.gather(rows).str.replace_many(list(table), list(table.values())))

    return text.map_batches(replace, return_dtype=pl.String, is_elementwise=True)


def number_key(expr: pl.Expr) -> pl.Expr:
    """The sorted multiset of numbers and of the signs <, >, \\leq, \\geq, \\neq, \\pm, + in a text
    (apply to `math_text`), as one string: problems that differ in a number or in such a sign get
    different keys ("\\binom{8}{4}" vs "\\binom{9}{4}", "k > 0" vs "k < 0"); reworded ones the same."""
    return expr.str.extract_all(_GUARD_PATTERN).list.sort().list.join(" ")


# The shingle tokens that `_GUARD_PATTERN` finds in `math_text(spacing=False)`: numbers (the only
# tokens with a digit) and the signs; MinHash builds its number keys from the tokens.
GUARD_TOKEN = r"^(?:\d|(?:\\(?:leq|geq|neq|pm|mp)|[<>+])$)"
_SIGN_TOKENS = [r"\leq", r"\geq", r"\neq", r"\pm", r"\mp", "<", ">", "+"]


def _string_views(tokens: pl.Series) -> np.ndarray | None:
    """The Arrow string views of `tokens` as (n x 2) uint64, zero-copy: each view holds the length
    (low 4 bytes) and then the string itself when it has <= 12 bytes (zero-padded), else its first 4
    bytes. None if polars hands out another layout."""
    array = tokens.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.string_view() or array.null_count:
        return None
    views = np.frombuffer(array.buffers()[1], dtype=np.uint64)
    return views[2 * array.offset : 2 * (array.offset + len(array))].reshape(-1, 2)


@cache
def _sign_views() -> np.ndarray:
    """The first 8 bytes of each sign token's view (length and all its bytes), sorted."""
    views = _string_views(pl.Series(_SIGN_TOKENS))
    assert views is not None, "polars hands out string views"
    return np.sort(views[:, 0])


def guard_tokens(tokens: pl.Series) -> np.ndarray:
    """Which tokens match GUARD_TOKEN, read from the tokens' Arrow views instead of one regex call
    per token (7 vs 28 ms for 1.4M tokens): a number is a token whose first byte is an ASCII digit
    (a non-ASCII first character goes to the regex), a sign a view equal to a sign's (a token of
    <= 4 bytes is all in the first 8 bytes of its view, the rest zero)."""
    views = _string_views(tokens)
    if views is None:
        return tokens.str.contains(GUARD_TOKEN).to_numpy()
    first = views.view(np.uint8)[:, 4]  # the string's first byte, inline or prefix
    guard = (first - np.uint8(ord("0"))) < 10
    signs = _sign_views()
    starts = np.isin(first, np.frombuffer(b"\\<>+", dtype=np.uint8))
    maybe = np.flatnonzero(starts & (views[:, 1] == 0))
    at = np.minimum(np.searchsorted(signs, views[maybe, 0]), signs.size - 1)
    guard[maybe[signs[at] == views[maybe, 0]]] = True
    other = np.flatnonzero(first >= 0x80)
    if other.size:
        guard[other] = tokens.gather(other).str.contains(GUARD_TOKEN).to_numpy()
    return guard
