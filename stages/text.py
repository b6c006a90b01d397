"""Text normalisation shared by uids, exact dedup and (later) shingling and embedding.

One canonical form, so that two problems that differ only in Unicode form, whitespace, letter case
or LaTeX spacing (`\\frac {1} {2}` vs `\\frac{1}{2}`) get the same uid and collapse in exact dedup.
Everything is a polars expression so a million rows normalise in well under a second.
"""

from __future__ import annotations

import hashlib

import polars as pl

# Whitespace next to LaTeX syntax carries no meaning: `\frac {1} {2}`, `x ^ {2}`, `a _ i`, `{ x }`.
_LATEX_SPACE = r"\s*([{}^_])\s*"
# A control word swallows the spaces after it: `\alpha  x` == `\alpha x`; keep one so `\alpha x` != `\alphax`.
_CONTROL_WORD_SPACE = r"(\\[A-Za-z]+)\s+"


def canonical_text(expr: pl.Expr) -> pl.Expr:
    """Canonical form of a problem text: NFKC, lower case, LaTeX spacing removed, whitespace collapsed."""
    return (
        expr.str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(_CONTROL_WORD_SPACE, "$1 ")
        .str.replace_all(_LATEX_SPACE, "$1")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def stable_hash(texts: pl.Series, digest_size: int = 8) -> pl.Series:
    """blake2b hex digests: stable across polars versions and machines (unlike `Expr.hash`)."""
    blake = hashlib.blake2b
    return pl.Series(
        texts.name,
        [None if t is None else blake(t.encode(), digest_size=digest_size).hexdigest() for t in texts],
        dtype=pl.String,
    )


def uid_expr(problem: pl.Expr) -> pl.Expr:
    """The problem uid: 16 hex chars of blake2b over the canonical text."""
    return canonical_text(problem).map_batches(stable_hash, return_dtype=pl.String)


def uid_of(problem: str) -> str:
    """uid of one problem text (same result as `uid_expr`, for single values and tests)."""
    return pl.select(uid_expr(pl.lit(problem, dtype=pl.String))).item()
