"""R1-style quality filters: each failing check is a drop reason with its evidence.

Checks, in the order a row is judged (the first that fails names the drop):
truncated, unbalanced_think, empty_reasoning, no_final_answer, too_short, too_long,
repetition, language_mixing. Thresholds were set on the Sky-T1 traces here: looping, cut-off traces
compress to ~0.02 of their size and repeat a 20-word run hundreds of times, finished ones compress to
>= 0.2 and repeat nothing more than 3 times (docs/verification.md).
"""

from __future__ import annotations

import zlib
from collections import Counter

import polars as pl
from pydantic import BaseModel, ConfigDict

from stages.records import detail_json

# Letters per script. Greek is left out: math text is full of Greek letters in any language.
SCRIPTS = {
    "latin": r"\p{Latin}",
    "cjk": r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]",
    "cyrillic": r"\p{Cyrillic}",
    "arabic": r"\p{Arabic}",
    "devanagari": r"\p{Devanagari}",
    "thai": r"\p{Thai}",
}


class QualityConfig(BaseModel):
    """Quality-filter thresholds; `None` turns a bound off."""

    model_config = ConfigDict(extra="forbid")

    min_reasoning_chars: int = 1  # when a thinking section exists, at least this much of it
    min_chars: int | None = 20
    max_chars: int | None = 400_000
    max_tokens: int | None = None  # on completion_tokens, when the backend reported them
    min_compression_ratio: float = 0.08  # zlib size / raw size, for texts of >= 2,000 chars
    ngram: int = 20  # words per n-gram for the repetition count
    max_ngram_repeats: int = 20
    max_foreign_script_share: float = 0.02  # letters outside the text's main script / all letters
    min_foreign_letters: int = 20


def repetition_stats(text: str | None, n: int) -> dict[str, float]:
    """zlib compression ratio and the count of the most repeated `n`-word run."""
    raw = (text or "").encode()
    ratio = len(zlib.compress(raw, 6)) / len(raw) if raw else 1.0
    words = (text or "").split()
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    top = grams.most_common(1)[0][1] if grams else 0
    return {"compression_ratio": round(ratio, 4), "top_ngram_repeats": top}


def quality_verdicts(df: pl.DataFrame, cfg: QualityConfig) -> pl.DataFrame:
    """Add `drop_reason` / `drop_detail` (null when the row passes) to split generations.

    Expects columns: response, finish_reason, completion_tokens, domain, extracted, drop_reason,
    drop_detail, and the split columns `_thinking`, `_format`, `_complete`, `_answer`, `_has_program`.
    """
    text = pl.concat_str(
        [pl.col("_thinking").fill_null(""), pl.col("response").fill_null("")], separator="\n"
    )
    stats = pl.Series(
        "_rep", [repetition_stats(t, cfg.ngram) for t in df.select(text).to_series()], strict=False
    )
    df = df.with_columns(stats, _chars=text.str.len_chars())
    letters = {name: text.str.count_matches(pattern).alias(f"_s_{name}") for name, pattern in SCRIPTS.items()}
    df = df.with_columns(**{f"_s_{k}": v for k, v in letters.items()})
    counts = [pl.col(f"_s_{k}") for k in SCRIPTS]
    total, main = pl.sum_horizontal(counts), pl.max_horizontal(counts)
    foreign = total - main
    opens = pl.col("response").fill_null("").str.count_matches("<think>", literal=True)
    closes = pl.col("response").fill_null("").str.count_matches("</think>", literal=True)
    thinking_len = pl.col("_thinking").fill_null("").str.strip_chars().str.len_chars()
    ratio = pl.col("_rep").struct.field("compression_ratio")
    repeats = pl.col("_rep").struct.field("top_ngram_repeats")
    tokens = pl.col("completion_tokens")
    needs_answer = pl.col("domain").fill_null("math") != "code"

    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        (
            "truncated",
            (pl.col("finish_reason") == "length").fill_null(False) | ~pl.col("_complete"),
            detail_json(
                finish_reason=pl.col("finish_reason"), format=pl.col("_format"), chars=pl.col("_chars")
            ),
        ),
        (
            "unbalanced_think",
            (opens > 1) | (closes > 1) | ((opens == 1) & (closes == 0)),
            detail_json(think_open=opens, think_close=closes),
        ),
        (
            "empty_reasoning",
            (pl.col("_format") != "plain") & (thinking_len < cfg.min_reasoning_chars),
            detail_json(format=pl.col("_format"), reasoning_chars=thinking_len),
        ),
        (
            "no_final_answer",
            pl.when(needs_answer).then(pl.col("extracted").is_null()).otherwise(~pl.col("_has_program")),
            detail_json(domain=pl.col("domain"), answer_tail=pl.col("_answer").fill_null("").str.slice(-200)),
        ),
        (
            "too_short",
            pl.lit(cfg.min_chars is not None) & (pl.col("_chars") < (cfg.min_chars or 0)),
            detail_json(chars=pl.col("_chars"), min_chars=cfg.min_chars),
        ),
        (
            "too_long",
            (pl.lit(cfg.max_chars is not None) & (pl.col("_chars") > (cfg.max_chars or 0)))
            | (pl.lit(cfg.max_tokens is not None) & (tokens > (cfg.max_tokens or 0)).fill_null(False)),
            detail_json(chars=pl.col("_chars"), completion_tokens=tokens, max_chars=cfg.max_chars),
        ),
        (
            "repetition",
            ((pl.col("_chars") >= 2000) & (ratio < cfg.min_compression_ratio))
            | (repeats > cfg.max_ngram_repeats),
            detail_json(compression_ratio=ratio, top_ngram_repeats=repeats, ngram=cfg.ngram),
        ),
        (
            "language_mixing",
            (foreign >= cfg.min_foreign_letters) & (foreign > cfg.max_foreign_script_share * total),
            detail_json(**{k: pl.col(f"_s_{k}") for k in SCRIPTS}),
        ),
    ]
    # A row may arrive already judged (bad input found by the reader): that verdict stands.
    reason = pl.coalesce([pl.col("drop_reason"), *(pl.when(c).then(pl.lit(name)) for name, c, _ in checks)])
    detail = pl.coalesce([pl.col("drop_detail"), *(pl.when(c).then(evidence) for _, c, evidence in checks)])
    scratch = ["_rep", "_chars", *(f"_s_{k}" for k in SCRIPTS)]
    return df.with_columns(drop_reason=reason, drop_detail=detail).drop(scratch)
