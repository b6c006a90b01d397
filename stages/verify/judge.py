"""LLM judge: a second opinion where rules cannot decide (proofs, free-form answers, unparsable gold).

The judge is any callable that takes a batch of chat-message lists and returns one completion text
per conversation; the teacher backends (stages/generate) provide one, tests pass a fake. The stage
never calls a model on its own: enabling the judge without passing a backend is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from pydantic import BaseModel, ConfigDict

from stages.generate.config import GenerateConfig

Messages = list[dict[str, str]]
Judge = Callable[[list[Messages]], list[str]]

VERDICTS = ("correct", "incorrect", "unsure")
_JSON_OBJECT = re.compile(r"\{[^{}]*\"verdict\"[^{}]*\}", re.DOTALL)


class JudgeNotConfigured(RuntimeError):
    """`judge.enabled` is true but the caller gave no judge backend."""


class JudgeConfig(BaseModel):
    """When to ask the LLM judge (off by default: it costs a model call per row)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    on_no_gold: bool = True  # rows with neither a gold answer nor tests (proofs, free-form)
    on_parse_failure: bool = True  # math rows whose gold or prediction math-verify could not parse
    max_response_chars: int = 8000  # the tail of the response is what holds the final answer
    batch_size: int = 32
    # the model that judges, through the teacher backends (any OpenAI-compatible endpoint, vLLM, or
    # the CPU teacher); a caller may instead pass a judge callable
    backend: GenerateConfig | None = None


def judge_prompt() -> str:
    return files("prompts").joinpath("judge.md").read_text()


def judge_messages(
    problem: str | None, reference: str | None, response: str | None, cfg: JudgeConfig
) -> Messages:
    """The judge conversation for one row (the response is cut to its last `max_response_chars`)."""
    tail = (response or "")[-cfg.max_response_chars :]
    content = (
        judge_prompt()
        .replace("{{problem}}", problem or "")
        .replace("{{reference}}", reference or "")
        .replace("{{response}}", tail)
    )
    return [{"role": "user", "content": content}]


def parse_verdict(text: str | None) -> dict[str, Any]:
    """The last JSON verdict object in a judge completion; `verdict` is `error` if there is none."""
    for match in reversed(_JSON_OBJECT.findall(text or "")):
        try:
            payload = json.loads(match)
        except json.JSONDecodeError:
            continue
        verdict = str(payload.get("verdict", "")).strip().lower()
        if verdict in VERDICTS:
            return {
                "verdict": verdict,
                "extracted_answer": payload.get("extracted_answer"),
                "reason": str(payload.get("reason", ""))[:500],
            }
    return {
        "verdict": "error",
        "extracted_answer": None,
        "reason": f"unreadable judge output: {(text or '')[:200]!r}",
    }


def backend_judge(cfg: JudgeConfig) -> Judge | None:
    """The judge callable for `cfg.backend` (None when the recipe names no backend)."""
    if cfg.backend is None:
        return None
    from stages.generate import complete

    backend = cfg.backend
    return lambda conversations: complete(conversations, backend)


def run_judge(judge: Judge | None, conversations: list[Messages], cfg: JudgeConfig) -> list[dict[str, Any]]:
    """Verdicts for `conversations`, in batches; a backend that returns the wrong count is an error."""
    if judge is None:
        raise JudgeNotConfigured(
            "verify.judge.enabled is true but no judge backend is set: give judge.backend "
            "(a teacher config: backend, model, ...) or set judge.enabled: false"
        )
    verdicts: list[dict[str, Any]] = []
    for start in range(0, len(conversations), cfg.batch_size):
        batch = conversations[start : start + cfg.batch_size]
        outputs = judge(batch)
        if len(outputs) != len(batch):
            raise RuntimeError(f"judge returned {len(outputs)} completions for {len(batch)} conversations")
        verdicts.extend(parse_verdict(text) for text in outputs)
    return verdicts
