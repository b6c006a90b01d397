"""The generation stage: n teacher samples per problem, every one cached the moment it arrives.

Two passes over the input shards:
  1. requests: for each problem, the samples not yet in the cache become jobs for the backend;
     each sample ends up committed to the cache or recorded as failed for good.
  2. rows: every expected (problem, sample) is read back from the cache and written as a kept
     generation row, or as a dropped row (`request_failed`, with the error) - so rows in
     (problems x n) always equals kept + dropped, and a re-run or a resumed run pays only for
     what is missing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from prompts.templates import PromptTemplate, load_template, text_hash
from stages.generate.backends.base import Job, Messages
from stages.generate.cache import SampleCache, sample_key
from stages.generate.config import GenerateConfig
from stages.generate.parse import split_reasoning
from stages.generate.progress import LiveProgress, Stats
from stages.generate.runner import Runner
from stages.records import GENERATION_SCHEMA, conform, to_json
from stages.store import StageWriter, count_rows, read_shards

PROBLEM_COLUMNS = ("source", "domain", "problem", "answer", "tests")
EXTRA_SCHEMA: dict[str, pl.DataType] = {
    "truncated": pl.Boolean(),
    "template": pl.String(),
    "template_hash": pl.String(),
    **{c: pl.String() for c in PROBLEM_COLUMNS},
}
KEPT_SCHEMA = {**GENERATION_SCHEMA, **EXTRA_SCHEMA}
DROPPED_SCHEMA = {**KEPT_SCHEMA, "drop_reason": pl.String(), "drop_detail": pl.String()}
CACHE_FILE = "samples.sqlite"

T = TypeVar("T")


@dataclass(frozen=True)
class Prompt:
    """A problem rendered for the teacher, with the cache key of each of its n samples."""

    row: dict[str, Any]
    template: PromptTemplate | None
    messages: Messages
    prompt_hash: str | None
    keys: tuple[str, ...]
    error: str | None = None  # why no request can be made (no template, empty problem)


def run(input_dir: Path, config: GenerateConfig, out: StageWriter) -> dict[str, Any]:
    """Generate n samples per problem of `input_dir` into `out`; returns the report details."""
    stats = Stats()
    cache = SampleCache(config.cache_dir / CACHE_FILE)
    try:
        total = count_rows(input_dir)
        stats.samples_expected = (total if config.limit is None else min(total, config.limit)) * config.n
        with LiveProgress(stats, stats.samples_expected, config.progress) as progress:
            failures = _request_missing(input_dir, config, cache, stats, progress)
        stats.request_phase_s = stats.elapsed()
        templates = _write_rows(input_dir, config, cache, failures, out)
    finally:
        cache.close()
    return {
        "backend": config.backend,
        "model": config.model,
        "templates": templates,
        "cache": str(cache.path),
        **stats.summary(),
    }


def complete(conversations: list[Messages], config: GenerateConfig) -> list[str]:
    """One reply per conversation (its final response, reasoning split off) from the configured
    teacher backend, for LLM judges (verify, decontamination): the same endpoint handling, limits,
    retries and sample cache as the stage (a repeated question is a cache hit). A conversation whose
    request failed for good gets ""."""
    cache = SampleCache(config.cache_dir / CACHE_FILE)
    try:
        sampling = config.sampling_key()
        jobs = []
        for messages in conversations:
            prompt_hash = text_hash(json.dumps(messages, ensure_ascii=False, sort_keys=True))
            key = sample_key(config.model, prompt_hash, sampling, 0)
            est = sum(len(m["content"]) for m in messages) // 3 + config.max_tokens
            jobs.append(
                Job(
                    uid=prompt_hash,
                    prompt_hash=prompt_hash,
                    messages=messages,
                    samples=(0,),
                    keys=(key,),
                    est_tokens=est,
                )
            )
        cached = cache.get_many(job.keys[0] for job in jobs)
        missing = [job for job in jobs if job.keys[0] not in cached]
        stats = Stats()
        if missing:
            with LiveProgress(stats, len(missing), config.progress, label="judge") as progress:
                _request(iter(missing), config, cache, stats, progress)
        replies = cache.get_many(job.keys[0] for job in jobs)
        answers = []
        for job in jobs:  # the reply without its reasoning: judges read the final answer
            record = replies.get(job.keys[0]) or {}
            answers.append(split_reasoning(record.get("content"), record.get("reasoning_content"))[1] or "")
        return answers
    finally:
        cache.close()


def _request_missing(
    input_dir: Path, config: GenerateConfig, cache: SampleCache, stats: Stats, progress: LiveProgress
) -> dict[str, dict[str, Any]]:
    return _request(_jobs(input_dir, config, cache, stats, progress), config, cache, stats, progress)


def _request(
    jobs: Iterator[Job], config: GenerateConfig, cache: SampleCache, stats: Stats, progress: LiveProgress
) -> dict[str, dict[str, Any]]:
    """Send `jobs` to the configured backend; every finished sample lands in `cache`."""
    if config.backend == "vllm":
        from stages.generate.backends.vllm_backend import run_offline

        return run_offline(jobs, config, cache, stats, progress)
    if config.backend == "local":  # more requests than decoding slots would only queue up and time out
        config = config.model_copy(update={"concurrency": min(config.concurrency, config.local_parallel)})
    with _endpoint(config) as (base_url, api_key):
        return _run_async(_request_async(jobs, config, cache, stats, progress, base_url, api_key))


async def _request_async(
    jobs: Iterator[Job],
    config: GenerateConfig,
    cache: SampleCache,
    stats: Stats,
    progress: LiveProgress,
    base_url: str,
    api_key: str,
) -> dict[str, dict[str, Any]]:
    from stages.generate.backends.openai_backend import make_backend

    backend = make_backend(config, base_url, api_key)
    try:
        return await Runner(backend, cache, config, stats, progress, secrets=[api_key]).run(jobs)
    finally:
        await backend.aclose()


@contextmanager
def _endpoint(config: GenerateConfig) -> Iterator[tuple[str, str]]:
    """(base URL, API key): from the environment, or a CPU teacher started for this run."""
    if config.backend == "local":
        from stages.generate.teacher_server import cpu_teacher

        with cpu_teacher(
            config.model, config.local_parallel, config.local_ctx_per_slot, config.local_threads
        ) as url:
            yield url, "no-key"
        return
    from stages.generate.backends.openai_backend import read_credentials

    yield read_credentials(config)


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from a thread that already runs an event loop (a notebook): then in a new thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _asyncio_run(coro)
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_asyncio_run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _asyncio_run(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is installed (the `teacher` extra): about a third less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ---- problems -> prompts -> jobs ----


def _problems(input_dir: Path, limit: int | None) -> Iterator[pl.DataFrame]:
    """Input batches, stopping after `limit` problems (the same ones on every pass)."""
    left = limit
    for batch in read_shards(input_dir):
        if left is not None:
            batch = batch.head(left)
            left -= batch.height
        if batch.height:
            yield batch
        if left == 0:
            return


def _prompts(batch: pl.DataFrame, config: GenerateConfig) -> list[Prompt]:
    sampling = config.sampling_key()
    columns = [c for c in ("uid", *PROBLEM_COLUMNS) if c in batch.columns]
    prompts = []
    for row in batch.select(columns).iter_rows(named=True):
        name = config.template_for(row.get("domain"))
        problem = row.get("problem")
        if name is None:
            prompts.append(Prompt(row, None, [], None, (), error="no_template"))
            continue
        if not problem or not problem.strip():
            prompts.append(Prompt(row, None, [], None, (), error="empty_problem"))
            continue
        template = load_template(name)
        messages = [{"role": "user", "content": template.render(problem=problem)}]
        prompt_hash = text_hash(json.dumps(messages, ensure_ascii=False, sort_keys=True))
        keys = tuple(sample_key(config.model, prompt_hash, sampling, i) for i in range(config.n))
        prompts.append(Prompt(row, template, messages, prompt_hash, keys))
    return prompts


def _jobs(
    input_dir: Path, config: GenerateConfig, cache: SampleCache, stats: Stats, progress: LiveProgress
) -> Iterator[Job]:
    """Jobs for the samples missing from the cache: one per sample, or one per problem with n."""
    for batch in _problems(input_dir, config.limit):
        prompts = _prompts(batch, config)
        cached = cache.get_many(k for p in prompts for k in p.keys)
        skipped = sum(config.n for p in prompts if p.error)
        stats.cache_hits += len(cached)
        progress.update(len(cached) + skipped)
        for p in prompts:
            missing = [(i, k) for i, k in enumerate(p.keys) if k not in cached]
            if not missing:
                continue
            grouped = config.n_per_request or config.backend == "vllm"  # the engine always does n natively
            groups = [missing] if grouped else [[m] for m in missing]
            est_prompt = len(p.messages[0]["content"]) // 3
            for group in groups:
                yield Job(
                    uid=p.row["uid"],
                    prompt_hash=p.prompt_hash or "",
                    messages=p.messages,
                    samples=tuple(i for i, _ in group),
                    keys=tuple(k for _, k in group),
                    est_tokens=est_prompt + config.max_tokens * len(group),
                )


# ---- cache -> rows ----


def _write_rows(
    input_dir: Path,
    config: GenerateConfig,
    cache: SampleCache,
    failures: dict[str, dict[str, Any]],
    out: StageWriter,
) -> dict[str, str]:
    """Write a kept or dropped row for every expected sample; returns {template name: hash} used."""
    templates: dict[str, str] = {}
    for batch in _problems(input_dir, config.limit):
        out.count_in(batch.height * config.n)
        prompts = _prompts(batch, config)
        cached = cache.get_many(k for p in prompts for k in p.keys)
        kept, dropped = [], []
        for p in prompts:
            if p.template is not None:
                templates[p.template.name] = p.template.hash
            for sample in range(config.n):
                key = p.keys[sample] if p.keys else None
                base = _base_row(p, sample, config)
                if key is not None and key in cached:
                    kept.append(base | _generation(cached[key]))
                elif key is not None and key in failures:
                    dropped.append(base | _dropped("request_failed", {**failures[key], "sample": sample}))
                else:
                    reason = p.error or "not_generated"
                    dropped.append(
                        base | _dropped(reason, {"sample": sample, "problem_uid": p.row.get("uid")})
                    )
        if kept:
            out.keep(pl.DataFrame(kept, schema=KEPT_SCHEMA))
        if dropped:
            out.drop(pl.DataFrame(dropped, schema=DROPPED_SCHEMA))
    _drop_beyond_limit(input_dir, config, out)
    return templates


def _drop_beyond_limit(input_dir: Path, config: GenerateConfig, out: StageWriter) -> None:
    """Problems past `limit` get no samples: one dropped row each (`over_limit`, sample null), so
    they are accounted for rather than silently left out."""
    if config.limit is None:
        return
    skip = config.limit
    for batch in read_shards(input_dir):
        rest = batch.slice(min(skip, batch.height))
        skip = max(0, skip - batch.height)
        if rest.height == 0:
            continue
        out.count_in(rest.height)
        rows = rest.select("uid", *[c for c in PROBLEM_COLUMNS if c in rest.columns]).with_columns(
            pl.lit(config.model).alias("model"),
            pl.lit("over_limit").alias("drop_reason"),
            pl.lit(to_json({"limit": config.limit})).alias("drop_detail"),
        )
        out.drop(conform(rows, DROPPED_SCHEMA))


def _base_row(p: Prompt, sample: int, config: GenerateConfig) -> dict[str, Any]:
    return {
        "uid": p.row.get("uid"),
        "sample": sample,
        "model": config.model,
        "prompt_hash": p.prompt_hash,
        "template": p.template.name if p.template else None,
        "template_hash": p.template.hash if p.template else None,
        **{c: p.row.get(c) for c in PROBLEM_COLUMNS},
    }


def _generation(record: dict[str, Any]) -> dict[str, Any]:
    reasoning, response = split_reasoning(record.get("content"), record.get("reasoning_content"))
    return {
        "reasoning": reasoning,
        "response": response,
        "finish_reason": record.get("finish_reason"),
        "prompt_tokens": record.get("prompt_tokens"),
        "completion_tokens": record.get("completion_tokens"),
        "latency_s": record.get("latency_s"),
        "cost_usd": record.get("cost_usd"),
        "truncated": record.get("finish_reason") == "length",
    }


def _dropped(reason: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"drop_reason": reason, "drop_detail": to_json(detail), "truncated": False}
