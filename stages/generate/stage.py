"""The generation stage: n teacher samples per problem, every one cached the moment it arrives.

Two passes over the input shards:
  1. requests: every problem's n samples go to the LLM client (stages.llm), which sends only those
     not in its cache; each ends up committed to the cache, failed for good, or not sent (budget).
  2. rows: every expected (problem, sample) is read back from the cache and written as a kept
     generation row, or as a dropped row (`request_failed` with the error, `budget_exhausted`) - so rows in
     (problems x n) always equals kept + dropped, and a re-run or a resumed run pays only for
     what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from prompts.templates import PromptTemplate, load_template
from stages.generate.config import GenerateConfig
from stages.llm import LLMClient, Messages, SampleRequest, prompt_hash
from stages.llm.parse import split_reasoning
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
# a failure kind that is a drop reason of its own (not `request_failed`)
OWN_REASONS = ("budget_exhausted",)


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
    with LLMClient(config.llm, label="generate") as client:
        total = count_rows(input_dir)
        expected = (total if config.limit is None else min(total, config.limit)) * config.llm.n
        failures = client.request(_requests(input_dir, config, client), expected)
        templates = _write_rows(input_dir, config, client, failures, out)
        return {
            "backend": config.llm.backend,
            "mode": config.llm.mode,
            "model": config.llm.model,
            "templates": templates,
            "cache": str(client.cache.path),
            "budget_usd": config.llm.budget_usd,
            **client.stats.summary(),
        }


# ---- problems -> prompts -> requests ----


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


def _prompts(batch: pl.DataFrame, config: GenerateConfig, client: LLMClient) -> list[Prompt]:
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
        hashed = prompt_hash(messages)
        prompts.append(Prompt(row, template, messages, hashed, client.keys(hashed, range(config.llm.n))))
    return prompts


def _requests(input_dir: Path, config: GenerateConfig, client: LLMClient) -> Iterator[SampleRequest]:
    """All n samples of every problem that can be prompted (the client skips those already cached)."""
    samples = tuple(range(config.llm.n))
    for batch in _problems(input_dir, config.limit):
        for p in _prompts(batch, config, client):
            if p.error:
                client.skipped(config.llm.n)
            else:
                yield SampleRequest(p.row["uid"], p.messages, samples, p.prompt_hash or "", p.keys)


# ---- cache -> rows ----


def _write_rows(
    input_dir: Path,
    config: GenerateConfig,
    client: LLMClient,
    failures: dict[str, dict[str, Any]],
    out: StageWriter,
) -> dict[str, str]:
    """Write a kept or dropped row for every expected sample; returns {template name: hash} used."""
    templates: dict[str, str] = {}
    for batch in _problems(input_dir, config.limit):
        out.count_in(batch.height * config.llm.n)
        prompts = _prompts(batch, config, client)
        cached = client.cache.get_many(k for p in prompts for k in p.keys)
        kept, dropped = [], []
        for p in prompts:
            if p.template is not None:
                templates[p.template.name] = p.template.hash
            for sample in range(config.llm.n):
                key = p.keys[sample] if p.keys else None
                base = _base_row(p, sample, config)
                if key is not None and key in cached:
                    kept.append(base | _generation(cached[key]))
                elif key is not None and key in failures:
                    kind = failures[key]["kind"]
                    reason = kind if kind in OWN_REASONS else "request_failed"
                    dropped.append(base | _dropped(reason, {**failures[key], "sample": sample}))
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
            pl.lit(config.llm.model).alias("model"),
            pl.lit("over_limit").alias("drop_reason"),
            pl.lit(to_json({"limit": config.limit})).alias("drop_detail"),
        )
        out.drop(conform(rows, DROPPED_SCHEMA))


def _base_row(p: Prompt, sample: int, config: GenerateConfig) -> dict[str, Any]:
    return {
        "uid": p.row.get("uid"),
        "sample": sample,
        "model": config.llm.model,
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
