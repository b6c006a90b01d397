"""The generation stage: n teacher samples per problem, every one cached the moment it arrives.

Per batch of problems:
  1. requests: every problem's n samples go to the LLM client (stages.llm), which sends only those
     not in its cache; each ends up committed to the cache, failed for good, or not sent (budget).
  2. rows: every expected (problem, sample) is read back from the cache and written as a kept
     generation row, or as a dropped row (`request_failed` with the error, `budget_exhausted`) - so rows in
     (problems x n) always equals kept + dropped, and a re-run or a resumed run pays only for
     what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ConfigDict

from prompts.templates import PromptTemplate, load_template
from stages.generate.config import GenerateConfig
from stages.llm import LLMClient, Messages, SampleRequest, prompt_hash
from stages.llm.parse import split_reasoning
from stages.records import GENERATION_SCHEMA, conform, to_json
from stages.stage import Context, Decision, Details, MapStage

# what the verifier needs of the problem next to each sample (meta: a code problem's starter code,
# whose function name functional tests call)
PROBLEM_COLUMNS = ("source", "domain", "problem", "answer", "tests", "meta")
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


class GenerateDetails(Details):
    """What the teacher did: its settings, the templates used, and the client's counts and costs
    (stages.llm.stats: samples, cache hits, requests, retries, tokens, cost of every attempt)."""

    model_config = ConfigDict(extra="allow")

    backend: str
    mode: str
    model: str
    templates: dict[str, str]
    cache: str
    budget_usd: float | None = None


class Generate(MapStage[GenerateConfig]):
    """n samples per problem; the first `limit` problems get requests, the rest are dropped as
    `over_limit`. The LLM client brings its own concurrency, so units run in the driver."""

    name = "generate"
    Config = GenerateConfig
    Details = GenerateDetails
    parallel = False

    @contextmanager
    def open(self, config: GenerateConfig, input_dir: Path | None) -> Iterator[LLMClient]:
        with LLMClient(config.llm, label="generate") as client:
            yield client

    def decide(self, batch: pl.DataFrame, config: GenerateConfig, ctx: Context) -> Decision:
        client: LLMClient = ctx.state
        room = batch.height if config.limit is None else max(0, min(batch.height, config.limit - ctx.row))
        asked, rest = batch.head(room), batch.slice(room)
        prompts = _prompts(asked, config, client)
        failures = client.request(_requests(prompts, config, client), len(prompts) * config.llm.n)
        kept, dropped, templates = _rows(prompts, config, client, failures)
        dropped = pl.concat([dropped, _over_limit(rest, config)], how="vertical_relaxed")
        return Decision(
            kept,
            dropped,
            tally=(templates, {"cache": str(client.cache.path), **client.stats.summary()}),
            rows_in=asked.height * config.llm.n + rest.height,
        )

    def summarize(self, tallies: list[Any], config: GenerateConfig) -> GenerateDetails:
        templates: dict[str, str] = {}
        for used, _ in tallies:
            templates.update(used)
        client = tallies[-1][1] if tallies else {"cache": str(config.llm.cache_dir)}  # cumulative
        return GenerateDetails(
            backend=config.llm.backend,
            mode=config.llm.mode,
            model=config.llm.model,
            templates=templates,
            budget_usd=config.llm.budget_usd,
            **client,
        )


# ---- problems -> prompts -> requests ----


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


def _requests(prompts: list[Prompt], config: GenerateConfig, client: LLMClient) -> Iterator[SampleRequest]:
    """All n samples of every problem that can be prompted (the client skips those already cached)."""
    samples = tuple(range(config.llm.n))
    for p in prompts:
        if p.error:
            client.skipped(config.llm.n)
        else:
            yield SampleRequest(p.row["uid"], p.messages, samples, p.prompt_hash or "", p.keys)


# ---- cache -> rows ----


def _rows(
    prompts: list[Prompt], config: GenerateConfig, client: LLMClient, failures: dict[str, dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, str]]:
    """A kept or dropped row for every expected sample, and the {template name: hash} used."""
    templates: dict[str, str] = {}
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
                dropped.append(base | _dropped(reason, {"sample": sample, "problem_uid": p.row.get("uid")}))
    return pl.DataFrame(kept, schema=KEPT_SCHEMA), pl.DataFrame(dropped, schema=DROPPED_SCHEMA), templates


def _over_limit(rest: pl.DataFrame, config: GenerateConfig) -> pl.DataFrame:
    """Problems past `limit` get no samples: one dropped row each (`over_limit`, sample null), so
    they are accounted for rather than silently left out."""
    rows = rest.select("uid", *[c for c in PROBLEM_COLUMNS if c in rest.columns]).with_columns(
        pl.lit(config.llm.model).alias("model"),
        pl.lit("over_limit").alias("drop_reason"),
        pl.lit(to_json({"limit": config.limit})).alias("drop_detail"),
    )
    return conform(rows, DROPPED_SCHEMA)


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
