"""Optional LLM judge over the top embedding candidates (the llm-decontaminator recipe).

The judge is an `Ask` (stages.llm): the LLM client for `judge.llm` - the same client, cache, limits
and cost accounting as teacher generation and the verify judge - or `judge.function`, a Python
function from one conversation to its reply (tests pass a fake).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

import polars as pl

from prompts.templates import load_template
from stages.decontam.config import JudgeConfig
from stages.llm import Ask, LLMError, Messages, complete

_VERDICT = re.compile(r"^\W*(true|false|yes|no)\b", re.IGNORECASE)
MAX_PROMPT_CHARS = 6_000


def one_at_a_time(chat: Callable[[Messages], str]) -> Ask:
    """An Ask from a one-conversation function; a failing call becomes an `error: …` reply."""

    def ask(conversations: list[Messages]) -> list[str]:
        replies = []
        for messages in conversations:
            try:
                replies.append(chat(messages))
            except Exception as exc:  # one bad call must not lose the others
                replies.append(f"error: {type(exc).__name__}: {exc}")
        return replies

    return ask


def resolve_backend(judge: JudgeConfig) -> Ask:
    """The judge of `judge`: the LLM client for `judge.llm` (batched through its cache and limits),
    or `judge.function: 'module:attribute'` naming a one-conversation function (a class is instantiated)."""
    if judge.llm is not None:
        llm = judge.llm
        return lambda conversations: complete(conversations, llm, "decontamination judge")
    if not judge.function:
        raise LLMError(
            "LLM judge not configured: methods include 'llm' but no judge is set "
            "(decontaminate.judge.llm = {backend, model, ...}, or judge.function = 'module:function')"
        )
    module, _, attr = judge.function.partition(":")
    try:
        target = getattr(importlib.import_module(module), attr or "judge")
    except (ImportError, AttributeError) as exc:
        raise LLMError(f"LLM judge function {judge.function!r} cannot be loaded: {exc}") from None
    return one_at_a_time(target() if isinstance(target, type) else target)


def judge_messages(benchmark_text: str, train_text: str) -> Messages:
    prompt = load_template("contamination_judge").render(
        benchmark=benchmark_text[:MAX_PROMPT_CHARS], train=train_text[:MAX_PROMPT_CHARS]
    )
    return [{"role": "user", "content": prompt}]


def parse_verdict(reply: str) -> bool | None:
    """True/False from the reply's first word; None when the reply says neither."""
    match = _VERDICT.match(reply or "")
    return None if match is None else match.group(1).lower() in ("true", "yes")


def judge_pairs(pairs: pl.DataFrame, ask: Ask) -> pl.DataFrame:
    """Ask the judge about every (train_text, benchmark_text) pair in one batch; adds `verdict` and
    `reply`. A failed batch is recorded on every pair (verdict null), never fatal for the run."""
    conversations = [
        judge_messages(bench, train)
        for train, bench in pairs.select("train_text", "benchmark_text").iter_rows()
    ]
    try:
        replies = ask(conversations) if conversations else []
    except Exception as exc:
        replies = [f"error: {type(exc).__name__}: {exc}"] * len(conversations)
    return pairs.with_columns(
        pl.Series("verdict", [parse_verdict(r) for r in replies], dtype=pl.Boolean),
        pl.Series("reply", [r[:500] for r in replies], dtype=pl.String),
    )
