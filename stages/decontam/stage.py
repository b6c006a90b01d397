"""The decontamination stage: drop training rows that contain (or rephrase) a benchmark problem.

Two streaming passes keep memory flat in the number of rows: pass 1 reads only the text column and
collects candidate (row, benchmark item) pairs from each method; the decisions are made on those
few pairs (boilerplate filters need every row's pairs first); pass 2 streams full rows again and
splits them into kept and dropped, with the evidence in `drop_detail`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from stages.decontam.config import DecontamConfig
from stages.decontam.fuzzy import string_hits
from stages.decontam.ngram import NgramIndex, evidence_span, missing_numbers, score_pairs
from stages.decontam.registry import BenchmarkSet, load_benchmarks
from stages.decontam.report import summarise
from stages.decontam.text import NUMBER_WORDS, match_text_expr, numbers_expr, words_expr
from stages.llm import Ask
from stages.records import to_json
from stages.store import StageWriter, read_shards, shard_paths
from stages.text import canonical_text

METHOD_RANK = {"ngram": 0, "digitless": 1, "fuzzy": 2, "embedding": 3, "llm": 4}
TEXT_CHARS = 400
DOC_SEED = 0xD0C
NUM_SEED = 0x4E55
COPY_COVERAGE = 0.5  # rows this close to an item are its copies or variants, not evidence of boilerplate
VERBATIM_COVERAGE = 0.95  # ... and rows this close are copies even for phrases of several items
HIT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "item": pl.Int32(),
    "method": pl.String(),
    "score": pl.Float64(),
    "shared": pl.Int64(),
    "evidence": pl.String(),
}


def prepare_items(benchmarks: BenchmarkSet) -> pl.DataFrame:
    """Benchmark items with their match text (code statements stripped), words and copy group."""
    return benchmarks.items.with_columns(
        match_text_expr(pl.col("problem"), pl.col("domain")).alias("match_text")
    ).with_columns(
        words_expr(pl.col("match_text")).alias("words"),
        canonical_text(pl.col("match_text")).alias("group"),
    )


def number_tokens(words: pl.Series) -> pl.DataFrame:
    """(item, pos, num): the number tokens of each item's words (number words as digits), hashed."""
    flat = pl.DataFrame({"item": pl.int_range(words.len(), eager=True, dtype=pl.Int32), "w": words})
    flat = flat.explode("w").with_columns((pl.int_range(pl.len()).over("item")).cast(pl.Int32).alias("pos"))
    flat = flat.filter(pl.col("w").str.contains(r"^\d") | pl.col("w").is_in(list(NUMBER_WORDS)))
    return flat.select("item", "pos", pl.col("w").replace(NUMBER_WORDS).hash(NUM_SEED).alias("num"))


def hashed_numbers(numbers: pl.Series, name: str) -> pl.DataFrame:
    """(name, num, count): each text's numbers, hashed, with how often each occurs (text i is numbers[i])."""
    flat = pl.DataFrame({name: pl.int_range(numbers.len(), eager=True), "num": numbers}).explode("num")
    flat = flat.drop_nulls("num").select(pl.col(name), pl.col("num").hash(NUM_SEED))
    return flat.group_by(name, "num").len("count").with_columns(pl.col("count").cast(pl.Int32))


def _columns(input_dir: Path, field: str) -> list[str]:
    paths = shard_paths(input_dir)
    names = pq.read_schema(paths[0]).names if paths else []
    if paths and field not in names:
        raise ValueError(f"decontaminate: input rows have no column {field!r} (columns: {', '.join(names)})")
    return [c for c in (field, "domain") if c in names]


def _batch_texts(batch: pl.DataFrame, field: str) -> pl.DataFrame:
    domain = pl.col("domain") if "domain" in batch.columns else pl.lit("general")
    return batch.select(
        pl.col(field).cast(pl.String).fill_null("").alias("text"), domain.fill_null("general").alias("domain")
    )


def run(input_dir: Path, config: DecontamConfig, out: StageWriter) -> dict[str, Any]:
    """Stage entry point: the judge backend (if the `llm` method is on) comes from the config."""
    judge = None
    if "llm" in config.methods:
        from stages.decontam.judge import resolve_backend

        judge = resolve_backend(config.judge)
    return run_with(input_dir, config, out, judge=judge)


def run_with(
    input_dir: Path, config: DecontamConfig, out: StageWriter, judge: Ask | None = None
) -> dict[str, Any]:
    """`run` with an explicit batch judge (tests pass a fake; `run` resolves the configured one)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    benchmarks = load_benchmarks(
        config.benchmarks or None, config.benchmark_dir, config.registry_file, config.extra_benchmarks
    )
    items = prepare_items(benchmarks)
    timings["load_benchmarks"] = time.perf_counter() - clock

    clock = time.perf_counter()
    index = emb_index = None
    if "ngram" in config.methods:
        ng = config.ngram
        index = NgramIndex.build(items["words"], items["group"], ng.n, ng.max_item_df, ng.fold_letters)
    if {"embedding", "llm"} & set(config.methods):
        from stages.decontam.embedding import EmbeddingIndex

        em = config.embedding
        emb_index = EmbeddingIndex.build(items["match_text"].to_list(), em.model, em.cache_dir, em.batch_size)
    timings["build_index"] = time.perf_counter() - clock

    clock = time.perf_counter()
    pairs, numbers, neighbours, rows = _pass_one(input_dir, config, index, emb_index, items)
    timings["match"] = time.perf_counter() - clock

    clock = time.perf_counter()
    hits, near = [], {}
    if index is not None:
        ngram_hits, near["ngram"], boiler = _ngram_hits(pairs, numbers, index, items, config)
        hits.append(ngram_hits)
    if emb_index is not None:
        emb_hits, near["embedding"], judged = _embedding_hits(neighbours, items, config, judge, hits)
        hits.append(emb_hits)
    for method in [m for m in config.methods if m in ("fuzzy", "digitless")]:
        found = string_hits(
            input_dir, config.field, method, items["problem"].to_list(), config.fuzzy, config.batch_rows
        )
        hits.append(
            _scored_hits(found, method, items["problem"].gather(found["item"]).str.slice(0, TEXT_CHARS))
        )
    all_hits = pl.concat(hits) if hits else pl.DataFrame(schema=HIT_SCHEMA)
    all_hits = all_hits.join(
        items.select(pl.int_range(pl.len(), dtype=pl.Int32).alias("item"), "benchmark", "benchmark_id"),
        on="item",
    )
    timings["decide"] = time.perf_counter() - clock

    clock = time.perf_counter()
    flagged_rows = _pass_two(input_dir, config, all_hits, out)
    timings["split"] = time.perf_counter() - clock

    details = summarise(
        config=config,
        benchmarks=benchmarks,
        items=items,
        hits=all_hits,
        flagged_rows=flagged_rows,
        near=near,
        rows_in=rows,
    )
    if index is not None:
        details["ngram_index"] = {
            "n": index.n,
            "indexed_ngrams": len(index.keys),
            "benchmark_boilerplate_ngrams": len(index.boilerplate),
            **boiler,
        }
    if emb_index is not None:
        details["judge"] = judged
    details["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return details


def _candidates(found: pl.DataFrame, config: DecontamConfig) -> pl.DataFrame:
    """(row, item) pairs that could still be flagged once boilerplate is left out (which only removes
    shared n-grams): a whole-text match, or enough shared n-grams before filtering."""
    ng = config.ngram
    least = min(ng.min_ngrams if ng.min_coverage is not None else 1 << 30, ng.min_shared or 1 << 30)
    return (
        found.group_by("row", "item")
        .agg((pl.col("pos") >= 0).sum().alias("n"), (pl.col("pos") < 0).any().alias("whole"))
        .filter(pl.col("whole") | (pl.col("n") >= least))
        .select("row", "item")
    )


def _pass_one(
    input_dir: Path, config: DecontamConfig, index: NgramIndex | None, emb_index: Any, items: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """Candidate pairs of every row: n-gram (row, item, key, pos), the numbers each n-gram candidate
    lacks (row, item, missing), and embedding (row, item, score, text)."""
    columns = _columns(input_dir, config.field)
    pair_frames, number_frames, neighbour_frames, offset = [], [], [], 0
    if index is not None and config.ngram.match_numbers:
        item_numbers = number_tokens(items["words"])
        item_starts = index.boilerplate_starts(items["words"])
        item_len = items["words"].list.len().fill_null(0).to_numpy()
    floor = config.embedding.threshold - config.embedding.near_miss_margin
    if "llm" in config.methods:
        floor = min(floor, config.judge.min_score)
    for batch in read_shards(input_dir, columns=columns, batch_rows=config.batch_rows):
        texts = _batch_texts(batch, config.field)
        if index is not None:
            words = texts.select(words_expr(pl.col("text"))).to_series()
            doc = texts["text"].hash(DOC_SEED).alias("doc")
            found = index.probe(words)
            pair_frames.append(found.with_columns(doc.gather(found["row"]), pl.col("row") + offset))
            if config.ngram.match_numbers:
                candidates = _candidates(found, config)
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
                    item_numbers,
                    item_starts,
                    item_len,
                    index.n,
                    config.ngram.number_slack,
                )
                number_frames.append(lacking.with_columns(pl.col("row") + offset))
        if emb_index is not None:
            match = texts.select(match_text_expr(pl.col("text"), pl.col("domain"))).to_series()
            found = emb_index.nearest(match.to_list(), config.embedding.k, floor)
            neighbour_frames.append(
                found.with_columns(match.gather(found["row"]).alias("train_text"), pl.col("row") + offset)
            )
        offset += batch.height
    pairs = (
        pl.concat(pair_frames)
        if pair_frames
        else pl.DataFrame(
            schema={"row": pl.Int64, "item": pl.Int32, "key": pl.UInt64, "pos": pl.Int32, "doc": pl.UInt64}
        )
    )
    numbers = (
        pl.concat(number_frames)
        if number_frames
        else pl.DataFrame(schema={"row": pl.Int64, "item": pl.Int32, "missing": pl.Int32})
    )
    neighbours = (
        pl.concat(neighbour_frames)
        if neighbour_frames
        else pl.DataFrame(
            schema={"row": pl.Int64, "item": pl.Int32, "score": pl.Float64, "train_text": pl.String}
        )
    )
    return pairs, numbers, neighbours, offset


def training_boilerplate(pairs: pl.DataFrame, index: NgramIndex, config: DecontamConfig) -> pl.Series:
    """Indexed n-grams that the training data shows to be boilerplate. Texts are counted, not rows (a
    problem repeated per sampled response is one problem).

    - `common_train_rows`: found in that many distinct training texts, not counting near-copies of an
      item (coverage >= 0.5 before filtering): a benchmark problem present many times, or as many
      variants with other numbers, is not boilerplate of its own.
    - `common_total`: found in at least 2 benchmark problems and in that many problems counting the
      training texts too (near-verbatim copies, coverage >= 0.95, left out): stock phrasing such as answer-format
      instructions or option lists, which may sit in only 2 or 3 benchmark items."""
    ng = config.ngram
    empty = pl.Series("key", [], dtype=pl.UInt64)
    if (ng.common_train_rows is None and ng.common_total is None) or not pairs.height:
        return empty
    phrases = pairs.filter(pl.col("pos") >= 0)
    raw = score_pairs(pairs, index)
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
    pairs: pl.DataFrame, numbers: pl.DataFrame, index: NgramIndex, items: pl.DataFrame, config: DecontamConfig
) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """Flagged n-gram pairs with their shared span, the near misses, and what boilerplate was ignored."""
    ng = config.ngram
    common = training_boilerplate(pairs, index, config)
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
    flagged = scored.filter(rule)
    words = items["words"]
    spans = [
        evidence_span(words[item].to_list(), positions, index.n)
        for item, positions in flagged.select("item", "positions").iter_rows()
    ]
    hits = flagged.select(
        "row",
        "item",
        pl.lit("ngram").alias("method"),
        pl.col("coverage").cast(pl.Float64).alias("score"),
        pl.col("shared").cast(pl.Int64),
        pl.Series("evidence", spans, dtype=pl.String),
    )
    threshold = ng.min_coverage if ng.min_coverage is not None else 1.0
    near_pairs = (
        scored.filter(~rule & (pl.col("coverage") >= ng.near_miss_from * threshold))
        .join(flagged.select("row").unique(), on="row", how="anti")
        .sort(["coverage", "row", "item"], descending=[True, False, False])  # ties in a stable order
        .group_by("row", maintain_order=True)
        .first()
    )
    near = {
        "metric": "coverage",
        "threshold": threshold,
        "scores": near_pairs["coverage"].round(4).to_list(),
        "examples": near_pairs.head(20)
        .select(
            "row",
            "item",
            pl.col("coverage").alias("score"),
            pl.when(pl.col("missing") > 0)
            .then(pl.format("overlap, but {} of the item's numbers missing", pl.col("missing")))
            .otherwise(pl.lit("below threshold"))
            .alias("reason"),
        )
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
        below.sort(["score", "row", "item"], descending=[True, False, False])
        .group_by("row", maintain_order=True)
        .first()
    )
    near = {
        "metric": "cosine",
        "threshold": em.threshold,
        "scores": below["score"].round(4).to_list(),
        "examples": below.head(20).select("row", "item", "score").to_dicts(),
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
    """One row per flagged training row: its best hit as `drop_detail` JSON, plus the other matches."""
    ranked = hits.with_columns(
        pl.col("method").replace_strict(METHOD_RANK, return_dtype=pl.Int8).alias("rank")
    ).sort(["row", "rank", "score", "item"], descending=[False, False, True, False])  # ties: stable
    details = []
    for row, group in ranked.group_by("row", maintain_order=True):
        best = group.row(0, named=True)
        others = [
            f"{b}/{i}"
            for b, i in group.slice(1)
            .select("benchmark", "benchmark_id")
            .unique(maintain_order=True)
            .iter_rows()
        ]
        details.append(
            (
                row[0],
                to_json(
                    {
                        "benchmark": best["benchmark"],
                        "benchmark_id": best["benchmark_id"],
                        "method": best["method"],
                        "score": round(best["score"], 4),
                        "shared_ngrams": best["shared"],
                        "evidence": best["evidence"],
                        "also_matches": others[:20],
                    }
                ),
            )
        )
    return pl.DataFrame(details, schema={"row": pl.Int64, "drop_detail": pl.String}, orient="row")


def _pass_two(input_dir: Path, config: DecontamConfig, hits: pl.DataFrame, out: StageWriter) -> pl.DataFrame:
    """Split rows into kept and dropped; returns uid and text of the flagged rows (for the report)."""
    decisions = (
        _drop_details(hits)
        if hits.height
        else pl.DataFrame(schema={"row": pl.Int64, "drop_detail": pl.String})
    )
    flagged_frames, offset = [], 0
    for batch in read_shards(input_dir, batch_rows=config.batch_rows):
        out.count_in(batch.height)
        numbered = batch.with_row_index("_row", offset=offset).with_columns(pl.col("_row").cast(pl.Int64))
        offset += batch.height
        joined = numbered.join(decisions, left_on="_row", right_on="row", how="left")
        dropped = joined.filter(pl.col("drop_detail").is_not_null())
        out.keep(joined.filter(pl.col("drop_detail").is_null()).select(batch.columns))
        if dropped.height:
            out.drop(
                dropped.select(*batch.columns, pl.lit("contaminated").alias("drop_reason"), "drop_detail")
            )
            uid = pl.col("uid") if "uid" in batch.columns else pl.lit(None, dtype=pl.String)
            flagged_frames.append(
                dropped.select(
                    pl.col("_row").alias("row"),
                    uid.alias("uid"),
                    pl.col(config.field).cast(pl.String).str.slice(0, TEXT_CHARS).alias("text"),
                )
            )
    schema = {"row": pl.Int64, "uid": pl.String, "text": pl.String}
    return pl.concat(flagged_frames) if flagged_frames else pl.DataFrame(schema=schema)
