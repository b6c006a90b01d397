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

PROMPT_FILE = Path(__file__).resolve().parents[2] / "prompts" / "contamination_judge.md"
_VERDICT = re.compile(r"^\W*(true|false|yes|no)\b", re.IGNORECASE)
MAX_PROMPT_CHARS = 6_000


class ChatFn(Protocol):
    """messages ([{role, content}]) -> the assistant's reply text."""

    def __call__(self, messages: list[dict[str, str]]) -> str: ...


class JudgeNotConfigured(RuntimeError):
    """The `llm` method was asked for but no judge backend is set."""


def resolve_backend(spec: str | None) -> ChatFn:
    """`module:attribute` naming a ChatFn (a class is instantiated with no arguments)."""
    if not spec:
        raise JudgeNotConfigured(
            "LLM judge not configured: methods include 'llm' but no judge backend is set "
            "(decontaminate.llm.backend = 'module:callable' returning reply text for chat messages)"
        )
    module, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module), attr or "judge")
    except (ImportError, AttributeError) as exc:
        raise JudgeNotConfigured(f"LLM judge backend {spec!r} cannot be loaded: {exc}") from None
    return target() if isinstance(target, type) else target


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


def judge_pairs(pairs: pl.DataFrame, chat: Callable[[list[dict[str, str]]], str]) -> pl.DataFrame:
    """Ask the judge about each (train_text, benchmark_text) pair; adds `verdict` and `reply`.
    A failing call is recorded (verdict null, reply = the error), never fatal for the run."""
    verdicts, replies = [], []
    for train, bench in pairs.select("train_text", "benchmark_text").iter_rows():
        try:
            reply = chat(judge_messages(bench, train))
        except Exception as exc:  # one bad call must not lose the others
            reply = f"error: {type(exc).__name__}: {exc}"
        verdicts.append(parse_verdict(reply))
        replies.append(reply[:500])
    return pairs.with_columns(
        pl.Series("verdict", verdicts, dtype=pl.Boolean), pl.Series("reply", replies, dtype=pl.String)
    )
