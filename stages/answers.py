"""Gold-answer extraction and normalisation: `\\boxed{}` (nested), `\\boxed 5`, `\\fbox{}`, GSM8K `#### 42`.

Shared by collection (gold answers from reference solutions) and verification (answers from model
responses), so both read a box the same way.
"""

from __future__ import annotations

import re

import polars as pl

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*(\{)|\\boxed +([^\s$]+)")
_GSM8K = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)


def _balanced(text: str, open_at: int) -> str | None:
    """Content of the brace group opening at `open_at`, or None if it never closes."""
    depth = 0
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "{" and text[i - 1] != "\\":  # `\{` is a literal brace, not a group
            depth += 1
        elif ch == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def last_boxed(text: str | None) -> str | None:
    """Content of the last complete `\\boxed{...}`, `\\fbox{...}` or `\\boxed x` in `text`."""
    if not text:
        return None
    found = None
    for m in _BOX_START.finditer(text):
        if m.group(1) is not None:
            content = _balanced(text, m.start(1))
            if content is not None:
                found = content
        else:  # `\boxed 5.`: the sentence's full stop is not part of the answer
            found = m.group(2).rstrip(".,;")
    return found.strip() if found is not None else None


def gsm8k_final(text: str | None) -> str | None:
    """The final answer after GSM8K's `####` marker."""
    if not text:
        return None
    matches = _GSM8K.findall(text)
    return matches[-1] if matches else None


def extract_answer(text: str | None) -> str | None:
    """Gold answer from a reference solution: GSM8K marker first, then the last box."""
    return gsm8k_final(text) or last_boxed(text)


_THOUSANDS = r"^(-?\d{1,3}(?:,\d{3})+)(\.\d+)?$"
_TRAILING_ZERO_FRACTION = r"^(-?\d+)\.0+$"
_LEADING_INTEGER_ZEROS = r"^(-?)0+(\d+)$"


def normalize_answers(
    frame: pl.DataFrame, column: str = "answer", integer_answers: bool = False
) -> pl.DataFrame:
    """Numeric clean-up that never changes meaning: `27.0`->`27`, `1,000`->`1000`, `$5$`->`5`;
    with `integer_answers` (AIME-like sources) also `025`->`25`. Empty answers become null.

    Each step materialises its column before the next reads it: chained `when/then` expressions
    re-evaluate their input once per reference, which made this 4x slower as a single expression."""
    s = pl.col(column)
    steps = [
        s.str.strip_chars().str.strip_chars("$").str.strip_chars(),
        pl.when(s.str.contains(_THOUSANDS)).then(s.str.replace_all(",", "", literal=True)).otherwise(s),
        s.str.replace(_TRAILING_ZERO_FRACTION, "$1"),
        *([s.str.replace(_LEADING_INTEGER_ZEROS, "$1$2")] if integer_answers else []),
        pl.when(s == "").then(None).otherwise(s),
    ]
    for step in steps:
        frame = frame.with_columns(step.alias(column))
    return frame


def normalize_answer_value(answer: str, integer_answers: bool = False) -> str | None:
    """`normalize_answers` for one value."""
    return normalize_answers(pl.DataFrame({"answer": [answer]}), "answer", integer_answers).item()
