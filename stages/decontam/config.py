"""Typed configuration of the decontamination stage. Defaults are the measured recommendations
(docs/decontamination.md, labelled study on the real sources): word 6-grams; a row is flagged when it
holds >= 0.3 of a benchmark item's non-boilerplate n-grams (and >= 6 of them) and the item's numbers;
boilerplate n-grams (in > 3 distinct benchmark problems, in >= 5 distinct training texts, or in >= 2
benchmark problems and >= 4 problems counting training texts too) are left out."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.decontam.fuzzy import FuzzyConfig
from stages.decontam.registry import BenchmarkEntry
from stages.llm import LLMConfig

Method = Literal["ngram", "embedding", "llm", "fuzzy", "digitless"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NgramConfig(Strict):
    n: int = Field(6, ge=3, le=50, description="words per n-gram (6 measured best; 8 and 13 also work)")
    min_coverage: float | None = Field(
        0.3, gt=0, le=1, description="flag when this share of a benchmark item's n-grams occur in the row"
    )
    min_ngrams: int = Field(
        6,
        ge=1,
        description="a coverage flag also needs this many shared n-grams (short items share stock phrases)",
    )
    min_shared: int | None = Field(
        None,
        ge=1,
        description="also flag on this many shared n-grams alone (off: 1 flags 6-40% of clean rows)",
    )
    max_item_df: int = Field(
        3, ge=1, description="n-grams found in more distinct benchmark problems than this are boilerplate"
    )
    common_train_rows: int | None = Field(
        5,
        ge=2,
        description="n-grams matched by at least this many distinct training texts are boilerplate (None: off)",
    )
    common_total: int | None = Field(
        4,
        ge=2,
        description="n-grams of at least 2 benchmark problems found in at least this many problems, "
        "benchmark items and training texts together, are boilerplate (None: off)",
    )
    match_numbers: bool = Field(
        True,
        description="flag only rows that contain every number of the item (changed numbers: another problem)",
    )
    number_slack: float = Field(
        0.1,
        ge=0,
        le=1,
        description="share of the item's number occurrences that may be missing as repeats (each distinct "
        "number must still occur)",
    )
    fold_letters: bool = Field(False, description="one-letter words (variable names) hash alike")
    near_miss_from: float = Field(
        0.5, ge=0, le=1, description="report unflagged pairs scoring at least this fraction of the threshold"
    )

    @model_validator(mode="after")
    def _some_rule(self) -> NgramConfig:
        if self.min_coverage is None and self.min_shared is None:
            raise ValueError("ngram: set min_coverage or min_shared (or both)")
        return self


class EmbeddingConfig(Strict):
    model: str = Field(
        "all-MiniLM-L6-v2", description="sentence-transformers model (shared cache with dedup)"
    )
    threshold: float = Field(0.85, gt=0, le=1, description="flag when cosine to a benchmark item >= this")
    k: int = Field(3, ge=1, le=50, description="nearest benchmark items looked at per row")
    near_miss_margin: float = Field(
        0.1, ge=0, le=1, description="report cosines in [threshold - margin, threshold)"
    )
    cache_dir: Path | None = Field(
        None, description="embedding cache (default $LONGCOT_CACHE_DIR/embeddings)"
    )
    batch_size: int = Field(64, ge=1)


class JudgeConfig(Strict):
    """`judge:` - the `llm` method's judge: a model through the LLM client, or a Python function."""

    llm: LLMConfig | None = Field(None, description="the judging model (backend, model, ...) via stages.llm")
    function: str | None = Field(None, description="or 'module:function' mapping chat messages to reply text")
    min_score: float = Field(
        0.7, gt=0, le=1, description="embedding candidates with cosine >= this are judged"
    )
    max_pairs: int = Field(
        2_000, ge=1, description="judge at most this many candidates (highest cosine first)"
    )


class DecontamConfig(Strict):
    methods: list[Method] = Field(
        ["ngram"], min_length=1, description="ngram, embedding, llm, fuzzy, digitless; combined with OR"
    )
    benchmarks: list[str] = Field(default_factory=list, description="registry names; empty = all")
    benchmark_dir: Path | None = Field(
        None, description="local benchmark JSONL files (else $LONGCOT_BENCHMARK_DIR, else the Hub)"
    )
    registry_file: Path | None = Field(
        None, description="a YAML of extra benchmark entries (same shape as data/benchmarks.yaml)"
    )
    extra_benchmarks: list[BenchmarkEntry] = Field(
        default_factory=list, description="ad-hoc benchmark entries"
    )
    field: str = Field("problem", description="column of the input rows to check")
    ngram: NgramConfig = NgramConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    judge: JudgeConfig = JudgeConfig()
    fuzzy: FuzzyConfig = FuzzyConfig()
    batch_rows: int = Field(25_000, ge=1_000, description="rows per streamed batch (two in flight)")
    threads: int = Field(
        2,
        ge=1,
        le=64,
        description="batches matched at once (n-gram method; polars and numpy use a core each)",
    )
    cache_dir: Path | None = Field(
        None,
        description="benchmark n-gram index cache (default $LONGCOT_CACHE_DIR/decontam, else "
        "~/.cache/longcot/decontam); keyed by content, safe to delete",
    )
    max_report_hits: int = Field(10_000, ge=0, description="hits listed in report.json (all are in dropped/)")
