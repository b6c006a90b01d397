"""The decontamination stage: drop training rows that contain (or rephrase) a benchmark problem.

Two streaming passes keep memory flat in the number of rows: pass 1 reads only the text column and
collects candidate (row, benchmark item) pairs from each method; the decisions are made on those
few pairs (boilerplate filters need every row's pairs first); pass 2 streams full rows again and
splits them into kept and dropped, with the evidence in `drop_detail`.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from stages.decontam.config import DecontamConfig
from stages.decontam.fuzzy import string_hits
from stages.decontam.ngram import NgramIndex, evidence_spans, missing_numbers, score_pairs
from stages.decontam.reference import load_reference
from stages.decontam.registry import resource_files
from stages.decontam.report import summarise
from stages.decontam.text import NUMBER_WORDS, match_text_expr, number_value, numbers_expr, words_expr
from stages.engine import glibc_call
from stages.llm import Ask
from stages.records import detail_json
from stages.stage import Context, Details, GlobalStage, Plan, ReduceContext
from stages.store import read_shards, shard_columns, shard_paths, take_rows

METHOD_RANK = {"ngram": 0, "digitless": 1, "fuzzy": 2, "embedding": 3, "llm": 4}
TEXT_CHARS = 400
DOC_SEED = 0xD0C
NUM_SEED = 0x4E55
COPY_COVERAGE = 0.5  # rows this close to an item are its copies or variants, not evidence of boilerplate
VERBATIM_COVERAGE = 0.95  # ... and rows this close are copies even for phrases of several items
NEAR_EXAMPLES = 20
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
HIT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "item": pl.Int32(),
    "method": pl.String(),
    "score": pl.Float64(),
    "shared": pl.Int64(),
    "evidence": pl.String(),
}


def number_tokens(words: pl.Series) -> pl.DataFrame:
    """(item, pos, num, w): the number tokens of each item's words, `number_value` hashed, and the word."""
    flat = pl.DataFrame({"item": pl.int_range(words.len(), eager=True, dtype=pl.Int32), "w": words})
    flat = flat.explode("w").with_columns((pl.int_range(pl.len()).over("item")).cast(pl.Int32).alias("pos"))
    flat = flat.filter(pl.col("w").str.contains(r"^\d") | pl.col("w").is_in(list(NUMBER_WORDS)))
    return flat.select("item", "pos", number_value(pl.col("w")).hash(NUM_SEED).alias("num"), "w")


def hashed_numbers(numbers: pl.Series, name: str) -> pl.DataFrame:
    """(name, num, count): each text's numbers, hashed, with how often each occurs (text i is numbers[i])."""
    flat = pl.DataFrame({name: pl.int_range(numbers.len(), eager=True), "num": numbers}).explode("num")
    flat = flat.drop_nulls("num").select(pl.col(name), pl.col("num").hash(NUM_SEED))
    return flat.group_by(name, "num").len("count").with_columns(pl.col("count").cast(pl.Int32))


def _columns(input_dir: Path, field: str, wanted: tuple[str, ...] = ("domain",)) -> list[str]:
    """`field` and those of `wanted` that the input shards have (a clear error without `field`)."""
    paths = shard_paths(input_dir)
    names = pq.read_schema(paths[0]).names if paths else []
    if paths and field not in names:
        raise ValueError(f"decontaminate: input rows have no column {field!r} (columns: {', '.join(names)})")
    return [c for c in (field, *wanted) if c in names]


def _batch_texts(batch: pl.DataFrame, field: str) -> pl.DataFrame:
    domain = pl.col("domain") if "domain" in batch.columns else pl.lit("general")
    return batch.select(
        pl.col(field).cast(pl.String).fill_null("").alias("text"), domain.fill_null("general").alias("domain")
    )


class DecontamDetails(Details):
    """report.json details of the decontaminate stage (schema in docs/decontamination.md)."""

    methods: list[str]
    rows_in: int
    rows_flagged: int
    benchmarks: dict[str, dict[str, Any]]
    hits: list[dict[str, Any]]
    hits_total: int
    hits_truncated: bool
    near_misses: dict[str, dict[str, Any]]
    thresholds: dict[str, Any]
    ngram_index: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    seconds: dict[str, float]


class Decontaminate(GlobalStage[DecontamConfig]):
    """Drop rows that overlap a registered benchmark, with the matched item as evidence.

    The matching streams the input in the reduce (batches matched `threads` at a time against an
    index loaded once, from its on-disk cache), because what decides a match (training boilerplate)
    is a statistic over every row; the plan then drops the flagged rows unit by unit. `judge`
    replaces the configured LLM judge (tests pass a fake)."""

    name = "decontaminate"
    Config = DecontamConfig
    Details = DecontamDetails
    summary_columns = ("uid",)
    # the matching is the reduce, in this process on its own threads; the map phases only count rows
    # and split them by the plan. A worker pool would add its processes' memory and start-up for that:
    # 1M rows, measured: 26.5 s / 1.14 GB peak with 2 workers, 23.8 s / 0.78 GB without
    parallel = False

    def __init__(self, judge: Ask | None = None):
        self.judge = judge

    def resources(self, config: DecontamConfig) -> list[Path]:
        return resource_files(
            config.benchmarks, config.benchmark_dir, config.registry_file, config.extra_benchmarks
        )

    def summarize(self, batch: pl.DataFrame, config: DecontamConfig, ctx: Context) -> int:
        return batch.height

    def reduce(self, parts: list[Any], config: DecontamConfig, ctx: ReduceContext) -> Plan:
        assert ctx.input_dir is not None
        judge = self.judge
        if judge is None and "llm" in config.methods:
            from stages.decontam.judge import resolve_backend

            judge = resolve_backend(config.judge)
        decisions, details = decontaminate(ctx.input_dir, config, judge)
        plan = (
            pl.int_range(ctx.rows, dtype=pl.Int64, eager=True)
            .to_frame("row")
            .join(decisions, on="row", how="left", maintain_order="left")
        )
        reason = pl.when(pl.col("drop_detail").is_not_null()).then(pl.lit("contaminated"))
        return Plan(plan.select(reason.alias("drop_reason"), "drop_detail"), DecontamDetails(**details))


def decontaminate(
    input_dir: Path, config: DecontamConfig, judge: Ask | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(row, drop_detail) of every contaminated input row, and the report details."""
    _return_large_frees()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    # every registry benchmark is loaded and indexed (or read from the cache): the statistics that
    # decide a match (boilerplate) must not depend on which are audited; `selected` marks those
    benchmarks, items, index, cached = load_reference(config)
    selected = items["selected"].to_numpy()
    timings["benchmark_index"] = time.perf_counter() - clock

    clock = time.perf_counter()
    emb_index = None
    if {"embedding", "llm"} & set(config.methods):
        from stages.decontam.embedding import EmbeddingIndex

        em = config.embedding
        audited = items.filter(pl.col("selected"))
        emb_index = EmbeddingIndex.build(
            audited["match_text"].to_list(),
            em.model,
            em.cache_dir,
            em.batch_size,
            ids=np.flatnonzero(selected),
        )
    timings["embedding_index"] = time.perf_counter() - clock

    clock = time.perf_counter()
    pairs, phrases, numbers, neighbours, rows = _pass_one(input_dir, config, index, emb_index, items)
    timings["match"] = time.perf_counter() - clock

    clock = time.perf_counter()
    hits, near = [], {}
    if index is not None:
        ngram_hits, near["ngram"], boiler = _ngram_hits(pairs, phrases, numbers, index, items, config)
        hits.append(ngram_hits)
        boiler["statistics"] = {
            "benchmarks": sorted([*benchmarks.origins, *benchmarks.reference]),
            "items": items.height,
            "missing": benchmarks.missing,
        }
    if emb_index is not None:
        emb_hits, near["embedding"], judged = _embedding_hits(neighbours, items, config, judge, hits)
        hits.append(emb_hits)
    for method in [m for m in config.methods if m in ("fuzzy", "digitless")]:
        found = string_hits(
            input_dir, config.field, method, items["problem"].to_list(), config.fuzzy, config.batch_rows
        ).filter(pl.col("item").is_in(np.flatnonzero(selected).tolist()))  # the audited benchmarks only
        hits.append(
            _scored_hits(found, method, items["problem"].gather(found["item"]).str.slice(0, TEXT_CHARS))
        )
    all_hits = pl.concat(hits) if hits else pl.DataFrame(schema=HIT_SCHEMA)
    all_hits = all_hits.join(
        items.select(pl.int_range(pl.len(), dtype=pl.Int32).alias("item"), "benchmark", "benchmark_id"),
        on="item",
    )
    decisions = (
        _drop_details(all_hits)
        if all_hits.height
        else pl.DataFrame(schema={"row": pl.Int64, "drop_detail": pl.String})
    )
    timings["decide"] = time.perf_counter() - clock

    shown = {e["row"] for v in near.values() for e in v["examples"]}
    flagged_rows, shown_rows = _report_rows(input_dir, config, decisions["row"], shown)
    details = summarise(
        config=config,
        benchmarks=benchmarks,
        items=items,
        hits=all_hits,
        flagged_rows=flagged_rows,
        near=near,
        texts=pl.concat([flagged_rows, shown_rows]).unique("row"),
        rows_in=rows,
    )
    if index is not None:
        details["ngram_index"] = {
            "n": index.n,
            "indexed_ngrams": len(index.keys),
            "benchmark_boilerplate_ngrams": len(index.boilerplate),
            "cached": cached,
            **boiler,
        }
    if emb_index is not None:
        details["judge"] = judged
    details["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return decisions, details


def _report_rows(
    input_dir: Path, config: DecontamConfig, flagged: pl.Series, shown: set[int]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(row, uid, text) of the flagged rows and of the near misses the report prints, texts clipped."""
    wanted = np.unique(np.r_[flagged.to_numpy(), np.fromiter(shown, dtype=np.int64, count=len(shown))])
    columns = [c for c in ("uid", config.field) if c in shard_columns(input_dir)]
    rows = take_rows(input_dir, wanted.astype(np.int64), columns).select(
        pl.col("idx").alias("row"),
        (pl.col("uid") if "uid" in columns else pl.lit(None, pl.String)).alias("uid"),
        pl.col(config.field).cast(pl.String).str.slice(0, TEXT_CHARS).alias("text"),
    )
    is_flagged = pl.col("row").is_in(flagged.implode())
    return rows.filter(is_flagged), rows.filter(~is_flagged)


def _return_large_frees() -> None:
    """Fix glibc's mmap threshold at 1 MiB. It rises after each large free, after which the per-batch
    numpy temporaries come from heap arenas that are not given back: about 200 MB more peak RSS at a
    million rows (measured: 1.02 vs 0.81 GB). Elsewhere than glibc this is a no-op."""
    glibc_call("mallopt", M_MMAP_THRESHOLD, 1 << 20)


def _groups(found: pl.DataFrame, index: NgramIndex, config: DecontamConfig) -> pl.DataFrame:
    """Per (row, item) of a batch: `candidate` when it could still be flagged once boilerplate is left
    out (which only removes shared n-grams): a whole-text match, or enough shared n-grams; `scored`
    when it could also be a near miss or a near-copy for the statistics (coverage before filtering at
    least the lower of the near-miss floor and COPY_COVERAGE). Other pairs only count for the
    training statistics, so their positions need not be kept."""
    ng = config.ngram
    least = min(ng.min_ngrams if ng.min_coverage is not None else 1 << 30, ng.min_shared or 1 << 30)
    floor = min(ng.near_miss_from * (ng.min_coverage if ng.min_coverage is not None else 1.0), COPY_COVERAGE)
    groups = found.group_by("row", "item").agg(
        (pl.col("pos") >= 0).sum().alias("n"), (pl.col("pos") < 0).any().alias("whole")
    )
    total = pl.Series(index.item_total).gather(groups["item"]).clip(lower_bound=1)
    candidate = pl.col("whole") | (pl.col("n") >= least)
    return groups.select(
        "row",
        "item",
        candidate.alias("candidate"),
        (candidate | (pl.col("n") / total >= floor)).alias("scored"),
    )


@dataclass
class _Matcher:
    """What matching one batch of training texts needs: the indexes and the items' number tokens."""

    config: DecontamConfig
    index: NgramIndex | None
    emb_index: Any
    items: pl.DataFrame

    def __post_init__(self) -> None:
        if self.index is not None and self.config.ngram.match_numbers:
            words = self.items["words"]
            self.item_numbers = number_tokens(words)
            self.item_starts = self.index.boilerplate_starts(words)
            self.item_len = words.list.len().fill_null(0).to_numpy()
        self.floor = self.config.embedding.threshold - self.config.embedding.near_miss_margin
        if "llm" in self.config.methods:
            self.floor = min(self.floor, self.config.judge.min_score)

    def __call__(self, batch: pl.DataFrame, offset: int) -> tuple[pl.DataFrame | None, ...]:
        """(n-gram pairs worth scoring, (key, row, doc) phrase hits, lacking numbers, embedding
        neighbours) of one batch, rows numbered from `offset`."""
        config, index = self.config, self.index
        texts = _batch_texts(batch, config.field)
        pairs = phrases = numbers = neighbours = None
        if index is not None:
            words = texts.select(words_expr(pl.col("text"))).to_series()
            doc = texts["text"].hash(DOC_SEED).alias("doc")
            found = index.probe(words)
            groups = _groups(found, index, config)
            phrases = found.filter(pl.col("pos") >= 0).select("key", "row").unique()
            phrases = phrases.with_columns(doc.gather(phrases["row"]), pl.col("row") + offset)
            scored = groups.filter("scored").select("row", "item")
            pairs = found.join(scored, on=["row", "item"], how="semi").with_columns(pl.col("row") + offset)
            if config.ngram.match_numbers:
                candidates = groups.filter("candidate").select("row", "item")
                rows_at = candidates["row"].unique().sort()
                numbered = texts["text"].gather(rows_at).to_frame().select(numbers_expr(pl.col("text")))
                row_numbers = hashed_numbers(numbered.to_series(), "row")
                row_numbers = row_numbers.with_columns(
                    pl.Series("row", rows_at.to_numpy()[row_numbers["row"].to_numpy()], dtype=pl.Int64)
                )
                lacking = missing_numbers(
                    candidates,
                    found,
                    row_numbers,
                    self.item_numbers,
                    self.item_starts,
                    self.item_len,
                    index.n,
                    config.ngram.number_slack,
                )
                numbers = lacking.with_columns(pl.col("row") + offset)
        if self.emb_index is not None:
            match = texts.select(match_text_expr(pl.col("text"), pl.col("domain"))).to_series()
            found = self.emb_index.nearest(match.to_list(), config.embedding.k, self.floor)
            neighbours = found.with_columns(
                match.gather(found["row"]).alias("train_text"), pl.col("row") + offset
            )
        return pairs, phrases, numbers, neighbours


def _pass_one(
    input_dir: Path, config: DecontamConfig, index: NgramIndex | None, emb_index: Any, items: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """Candidate pairs of every row: n-gram (row, item, key, pos) worth scoring, every phrase hit
    (key, row, doc) for the training statistics, the numbers each n-gram candidate lacks (row, item,
    missing, lacking), and embedding (row, item, score, text).

    Batches are matched `threads` at a time (polars and numpy release the GIL, so two cores work on
    two batches); the embedding encoder gets one batch at a time."""
    match = _Matcher(config, index, emb_index, items)
    threads = config.threads if emb_index is None else 1
    results, pending, offset = [], deque(), 0
    with ThreadPoolExecutor(threads) as pool:
        for batch in read_shards(
            input_dir, columns=_columns(input_dir, config.field), batch_rows=config.batch_rows
        ):
            pending.append(pool.submit(match, batch, offset))
            offset += batch.height
            while len(pending) >= threads:
                results.append(pending.popleft().result())
        results += [future.result() for future in pending]
    schemas = (
        {"row": pl.Int64, "item": pl.Int32, "key": pl.UInt64, "pos": pl.Int32},
        {"key": pl.UInt64, "row": pl.Int64, "doc": pl.UInt64},
        {"row": pl.Int64, "item": pl.Int32, "missing": pl.Int32, "lacking": pl.List(pl.String)},
        {"row": pl.Int64, "item": pl.Int32, "score": pl.Float64, "train_text": pl.String},
    )
    pairs, phrases, numbers, neighbours = (
        pl.concat(frames)
        if (frames := [r[k] for r in results if r[k] is not None])
        else pl.DataFrame(schema=schema)
        for k, schema in enumerate(schemas)
    )
    return pairs, phrases, numbers, neighbours, offset


def training_boilerplate(
    phrases: pl.DataFrame, raw: pl.DataFrame, index: NgramIndex, config: DecontamConfig
) -> pl.Series:
    """Indexed n-grams that the training data shows to be boilerplate. Texts are counted, not rows (a
    problem repeated per sampled response is one problem).

    - `common_train_rows`: found in that many distinct training texts, not counting near-copies of an
      item (coverage >= 0.5 before filtering): a benchmark problem present many times, or as many
      variants with other numbers, is not boilerplate of its own.
    - `common_total`: found in at least 2 benchmark problems and in that many problems counting the
      training texts too (near-verbatim copies, coverage >= 0.95, left out): stock phrasing such as answer-format
      instructions or option lists, which may sit in only 2 or 3 benchmark items.

    `phrases` are the (key, row, doc) n-gram hits of every row, `raw` the scored pairs' coverage
    before this filter (every near-copy among them). Every benchmark of the registry is in the index,
    so the counts are the same whichever benchmarks are audited."""
    ng = config.ngram
    empty = pl.Series("key", [], dtype=pl.UInt64)
    if (ng.common_train_rows is None and ng.common_total is None) or not phrases.height:
        return empty
    verbatim = raw.filter(pl.col("whole") | (pl.col("coverage") >= VERBATIM_COVERAGE)).select("row").unique()
    counts = (
        phrases.join(verbatim, on="row", how="anti")
        .group_by("key")
        .agg(pl.col("doc").n_unique().alias("rows"))
    )
    common = pl.lit(False)
    if ng.common_train_rows is not None:
        copies = raw.filter(pl.col("whole") | (pl.col("coverage") >= COPY_COVERAGE)).select("row").unique()
        others = (
            phrases.join(copies, on="row", how="anti")
            .group_by("key")
            .agg(pl.col("doc").n_unique().alias("others"))
        )
        counts = counts.join(others, on="key", how="left")
        common = common | (pl.col("others").fill_null(0) >= ng.common_train_rows)
    if ng.common_total is not None:
        key_df = pl.DataFrame({"key": index.keys, "df": index.key_df}).unique("key")
        counts = counts.join(key_df, on="key", how="left")
        # only phrases of several benchmark problems: a setup that one benchmark item shares with its
        # siblings in the training data (same figure, another question) is that item's own content
        shared = pl.col("df").fill_null(1)
        common = common | ((shared >= 2) & (pl.col("rows") + shared >= ng.common_total))
    return counts.filter(common)["key"]


def _ngram_hits(
    pairs: pl.DataFrame,
    phrases: pl.DataFrame,
    numbers: pl.DataFrame,
    index: NgramIndex,
    items: pl.DataFrame,
    config: DecontamConfig,
) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """Flagged n-gram pairs of the audited benchmarks with their shared span, the near misses (with the
    rule that kept each), and what boilerplate was ignored. Decisions are made against every loaded
    benchmark; only then are they narrowed to the audited ones."""
    ng = config.ngram
    raw = score_pairs(pairs, index)
    common = training_boilerplate(phrases, raw, index, config)
    scored = score_pairs(pairs, index, common)
    scored = scored.join(numbers, on=["row", "item"], how="left").with_columns(
        pl.col("missing").fill_null(0) if ng.match_numbers else pl.lit(0, dtype=pl.Int32).alias("missing")
    )
    overlap = pl.col("whole")  # the whole normalised text is a benchmark item's
    if ng.min_coverage is not None:
        overlap = overlap | ((pl.col("coverage") >= ng.min_coverage) & (pl.col("shared") >= ng.min_ngrams))
    if ng.min_shared is not None:
        overlap = overlap | (pl.col("shared") >= ng.min_shared)
    # the same template with other numbers is another problem ("\binom{8}{4}" vs "\binom{9}{4}")
    rule = overlap & (pl.col("missing") == 0)
    audited = pl.Series(np.flatnonzero(items["selected"].to_numpy()), dtype=pl.Int32).implode()
    scored = scored.filter(pl.col("item").is_in(audited))
    flagged = scored.filter(rule)
    hits = flagged.select(
        "row",
        "item",
        pl.lit("ngram").alias("method"),
        pl.col("coverage").cast(pl.Float64).alias("score"),
        pl.col("shared").cast(pl.Int64),
        evidence_spans(flagged, items["words"], index.n),
    )
    threshold = ng.min_coverage if ng.min_coverage is not None else 1.0
    before = raw.select(
        "row", "item", pl.col("coverage").alias("raw_coverage"), pl.col("shared").alias("raw_shared")
    )
    near_pairs = (
        scored.join(before, on=["row", "item"], how="left")
        .filter(~rule & (pl.max_horizontal("coverage", "raw_coverage") >= ng.near_miss_from * threshold))
        .join(flagged.select("row").unique(), on="row", how="anti")
        .sort(
            ["coverage", "raw_coverage", "row", "item"], descending=[True, True, False, False]
        )  # ties: stable
        .group_by("row", maintain_order=True)
        .first()
    )
    near = {
        "metric": "coverage",
        "threshold": threshold,
        "rule": _ngram_rule(config),
        "scores": near_pairs["coverage"].round(4).to_list(),
        "examples": near_pairs.head(NEAR_EXAMPLES)
        .select("row", "item", pl.col("coverage").alias("score"), "shared", *_kept_because(config, overlap))
        .to_dicts(),
    }
    other_numbers = scored.filter(overlap & (pl.col("missing") > 0))
    boiler = {
        "training_common_ngrams": int(common.len()),
        "common_train_rows": ng.common_train_rows,
        "common_total": ng.common_total,
        "number_mismatch_pairs": other_numbers.height,
        "number_mismatch_rows": int(other_numbers["row"].n_unique()),
    }
    return hits, near, boiler


def _ngram_rule(config: DecontamConfig) -> str:
    """The flag rule in words, as the report states it next to the near misses."""
    ng = config.ngram
    parts = []
    if ng.min_coverage is not None:
        parts.append(
            f"coverage >= {ng.min_coverage} of the item's non-boilerplate {ng.n}-grams and >= {ng.min_ngrams} shared"
        )
    if ng.min_shared is not None:
        parts.append(f">= {ng.min_shared} shared {ng.n}-grams")
    rule = " or ".join(parts) + " (or the whole text equal)"
    return rule + (", and the row has the item's numbers" if ng.match_numbers else "")


def _kept_because(config: DecontamConfig, overlap: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(rule, reason) of an unflagged pair, most decisive first: the number check (`overlap` held),
    too few shared n-grams, training boilerplate taking it under the threshold, or below the threshold."""
    ng = config.ngram
    cov, raw = pl.col("coverage").round(3), pl.col("raw_coverage").round(3)
    min_cov = ng.min_coverage if ng.min_coverage is not None else 2.0  # 2.0: no coverage rule
    numbers = overlap & (pl.col("missing") > 0)
    few = (pl.col("coverage") >= min_cov) & (pl.col("shared") < ng.min_ngrams)
    boiler = (pl.col("raw_coverage") >= min_cov) & (pl.col("raw_shared") >= ng.min_ngrams)
    lacking = pl.col("lacking").list.head(8).list.join(", ")
    if ng.min_coverage is not None:
        below = pl.format("coverage {} < {}", cov, pl.lit(ng.min_coverage))
    else:
        below = pl.format("{} shared n-grams < {}", "shared", pl.lit(ng.min_shared))
    return (
        pl.when(numbers)
        .then(pl.lit("number check"))
        .when(few)
        .then(pl.lit("too few n-grams"))
        .when(boiler)
        .then(pl.lit("boilerplate"))
        .otherwise(pl.lit("below threshold"))
        .alias("rule"),
        pl.when(numbers)
        .then(pl.format("overlap, but {} of the item's numbers missing from the row: {}", "missing", lacking))
        .when(few)
        .then(
            pl.format("coverage {}, but only {} shared n-grams (< {})", cov, "shared", pl.lit(ng.min_ngrams))
        )
        .when(boiler)
        .then(
            pl.format(
                "coverage {} counting {} training-boilerplate n-grams, {} without them",
                raw,
                pl.col("raw_shared") - pl.col("shared"),
                cov,
            )
        )
        .otherwise(below)
        .alias("reason"),
    )


def _embedding_hits(
    neighbours: pl.DataFrame,
    items: pl.DataFrame,
    config: DecontamConfig,
    judge: Ask | None,
    earlier: list[pl.DataFrame],
) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """Embedding hits (cosine >= threshold), then LLM verdicts on the remaining top candidates."""
    em = config.embedding
    bench_text = items["match_text"]
    hits: list[pl.DataFrame] = []
    if "embedding" in config.methods:
        flagged = neighbours.filter(pl.col("score") >= em.threshold)
        hits.append(
            _scored_hits(flagged, "embedding", bench_text.gather(flagged["item"]).str.slice(0, TEXT_CHARS))
        )
    judged: dict[str, Any] = {"asked": 0, "same": 0, "different": 0, "unparsed": 0}
    if "llm" in config.methods and judge is not None:
        done = pl.concat([*earlier, *hits]).select("row").unique() if earlier or hits else None
        candidates = neighbours.filter(pl.col("score") >= config.judge.min_score)
        if done is not None:
            candidates = candidates.join(done, on="row", how="anti")
        candidates = (
            candidates.sort("score", descending=True)
            .group_by("row", maintain_order=True)
            .first()
            .head(config.judge.max_pairs)
        )
        from stages.decontam.judge import judge_pairs

        verdicts = judge_pairs(
            candidates.with_columns(bench_text.gather(candidates["item"]).alias("benchmark_text")), judge
        )
        judged = {
            "asked": verdicts.height,
            "same": int(verdicts["verdict"].eq(True).sum()),
            "different": int(verdicts["verdict"].eq(False).sum()),
            "unparsed": int(verdicts["verdict"].is_null().sum()),
        }
        yes = verdicts.filter(pl.col("verdict").eq(True))
        hits.append(_scored_hits(yes, "llm", pl.col("reply")))
    below = neighbours.filter(
        pl.col("score").is_between(em.threshold - em.near_miss_margin, em.threshold, closed="left")
    )
    below = (
        below.sort(["score", "row", "item"], descending=[True, False, False])  # ties in a stable order
        .group_by("row", maintain_order=True)
        .first()
    )
    near = {
        "metric": "cosine",
        "threshold": em.threshold,
        "rule": f"cosine >= {em.threshold} ({em.model})",
        "scores": below["score"].round(4).to_list(),
        "examples": below.head(NEAR_EXAMPLES)
        .select(
            "row",
            "item",
            "score",
            pl.lit("below threshold").alias("rule"),
            pl.format("cosine {} < {}", pl.col("score").round(3), pl.lit(em.threshold)).alias("reason"),
        )
        .to_dicts(),
    }
    frame = pl.concat(hits) if hits else pl.DataFrame(schema=HIT_SCHEMA)
    return frame.select(list(HIT_SCHEMA)).cast(HIT_SCHEMA), near, judged  # type: ignore[arg-type]


def _scored_hits(frame: pl.DataFrame, method: str, evidence: pl.Expr | pl.Series) -> pl.DataFrame:
    """Hit rows of a method that scores pairs (embedding, llm): no shared n-gram count."""
    return frame.select(
        "row",
        "item",
        pl.lit(method).alias("method"),
        "score",
        pl.lit(None, dtype=pl.Int64).alias("shared"),
        (evidence if isinstance(evidence, pl.Expr) else pl.lit(evidence)).alias("evidence"),
    )


def _drop_details(hits: pl.DataFrame) -> pl.DataFrame:
    """One row per flagged training row: its best hit as `drop_detail` JSON (method rank, then score),
    with up to 20 other benchmark items it matches."""
    ranked = hits.with_columns(
        pl.col("method").replace_strict(METHOD_RANK, return_dtype=pl.Int8).alias("rank"),
        pl.format("{}/{}", "benchmark", "benchmark_id").alias("item_name"),
    ).sort(["row", "rank", "score", "item"], descending=[False, False, True, False])  # ties: stable
    best = ranked.group_by("row", maintain_order=True).agg(
        pl.col("benchmark", "benchmark_id", "method", "score", "shared", "evidence").first(),
        pl.col("item_name").slice(1).unique(maintain_order=True).head(20).alias("also_matches"),
    )
    return best.select(
        "row",
        detail_json(
            also_matches=pl.col("also_matches"),
            benchmark=pl.col("benchmark"),
            benchmark_id=pl.col("benchmark_id"),
            evidence=pl.col("evidence"),
            method=pl.col("method"),
            score=pl.col("score").round(4),
            shared_ngrams=pl.col("shared"),
        ).alias("drop_detail"),
    )
