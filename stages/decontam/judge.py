"""Optional LLM judge over the top embedding candidates (the llm-decontaminator recipe).

The judge is any callable from chat messages to the reply text, so teacher backends (stages/generate)
plug in without this package importing them; a fake is enough for tests.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import polars as pl

from stages.decontam.config import LlmConfig

PROMPT_FILE = Path(__file__).resolve().parents[2] / "prompts" / "contamination_judge.md"
_VERDICT = re.compile(r"^\W*(true|false|yes|no)\b", re.IGNORECASE)
MAX_PROMPT_CHARS = 6_000


class ChatFn(Protocol):
    """messages ([{role, content}]) -> the assistant's reply text."""

    def __call__(self, messages: list[dict[str, str]]) -> str: ...


class JudgeNotConfigured(RuntimeError):
    """The `llm` method was asked for but no judge backend is set."""


AskMany = Callable[[list[list[dict[str, str]]]], list[str]]


def one_at_a_time(chat: ChatFn) -> AskMany:
    """A batch judge from a one-conversation ChatFn; a failing call becomes an `error: …` reply."""

    def ask(conversations: list[list[dict[str, str]]]) -> list[str]:
        replies = []
        for messages in conversations:
            try:
                replies.append(chat(messages))
            except Exception as exc:  # one bad call must not lose the others
                replies.append(f"error: {type(exc).__name__}: {exc}")
        return replies

    return ask


def resolve_backend(llm: LlmConfig) -> AskMany:
    """The judge of `llm`: a teacher backend (`teacher:`, any generate backend, batched through its
    cache and limits), or `backend: 'module:attribute'` naming a ChatFn (a class is instantiated)."""
    if llm.teacher is not None:
        from stages.generate import complete

        teacher = llm.teacher
        return lambda conversations: complete(conversations, teacher)
    if not llm.backend:
        raise JudgeNotConfigured(
            "LLM judge not configured: methods include 'llm' but no judge is set "
            "(decontaminate.llm.teacher = {backend, model, ...}, or llm.backend = 'module:callable')"
        )
    module, _, attr = llm.backend.partition(":")
    try:
        target = getattr(importlib.import_module(module), attr or "judge")
    except (ImportError, AttributeError) as exc:
        raise JudgeNotConfigured(f"LLM judge backend {llm.backend!r} cannot be loaded: {exc}") from None
    return one_at_a_time(target() if isinstance(target, type) else target)


def judge_messages(benchmark_text: str, train_text: str) -> list[dict[str, str]]:
    template = PROMPT_FILE.read_text()
    prompt = template.replace("{benchmark}", benchmark_text[:MAX_PROMPT_CHARS]).replace(
        "{train}", train_text[:MAX_PROMPT_CHARS]
    )
    return [{"role": "user", "content": prompt}]


def parse_verdict(reply: str) -> bool | None:
    """True/False from the reply's first word; None when the reply says neither."""
    match = _VERDICT.match(reply or "")
    return None if match is None else match.group(1).lower() in ("true", "yes")


def judge_pairs(pairs: pl.DataFrame, ask: AskMany) -> pl.DataFrame:
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
