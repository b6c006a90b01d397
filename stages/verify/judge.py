"""LLM judge: a second opinion where rules cannot decide (proofs, free-form answers, unparsable gold).

The judge is an `Ask` (stages.llm: a batch of conversations -> one reply each): the LLM client for
`judge.llm`, or a callable a caller passes (tests pass a fake). Enabling the judge without either
is an LLMError.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from prompts.templates import load_template
from stages.llm import Ask, LLMConfig, LLMError, Messages, complete

VERDICTS = ("correct", "incorrect", "unsure")
_JSON_OBJECT = re.compile(r"\{[^{}]*\"verdict\"[^{}]*\}", re.DOTALL)


class JudgeConfig(BaseModel):
    """When to ask the LLM judge (off by default: it costs a model call per row)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    on_no_gold: bool = True  # rows with neither a gold answer nor tests (proofs, free-form)
    on_parse_failure: bool = True  # math rows whose gold or prediction math-verify could not parse
    max_response_chars: int = 8000  # the tail of the response is what holds the final answer
    batch_size: int = 32
    # the model that judges, through the LLM client (any OpenAI-compatible endpoint, vLLM, or the
    # CPU teacher); a caller may instead pass an Ask callable
    llm: LLMConfig | None = None


def judge_messages(
    problem: str | None, reference: str | None, response: str | None, cfg: JudgeConfig
) -> Messages:
    """The judge conversation for one row (the response is cut to its last `max_response_chars`)."""
    tail = (response or "")[-cfg.max_response_chars :]
    content = load_template("judge").render(problem=problem or "", reference=reference or "", response=tail)
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


def configured_judge(cfg: JudgeConfig, judge: Ask | None = None) -> Ask | None:
    """`judge` if given, else the LLM client for `cfg.llm`; an LLMError if enabled with neither."""
    if judge is None and cfg.llm is not None:
        llm = cfg.llm
        judge = lambda conversations: complete(conversations, llm, "verify judge")  # noqa: E731
    if cfg.enabled and judge is None:
        raise LLMError(
            "verify.judge.enabled is true but no judge model is set: give judge.llm "
            "({backend, model, ...}) or set judge.enabled: false"
        )
    return judge


def run_judge(judge: Ask | None, conversations: list[Messages], cfg: JudgeConfig) -> list[dict[str, Any]]:
    """Verdicts for `conversations`, in batches; a judge that returns the wrong count is an error."""
    judge = configured_judge(cfg, judge)
    assert judge is not None
    verdicts: list[dict[str, Any]] = []
    for start in range(0, len(conversations), cfg.batch_size):
        batch = conversations[start : start + cfg.batch_size]
        outputs = judge(batch)
        if len(outputs) != len(batch):
            raise RuntimeError(f"judge returned {len(outputs)} completions for {len(batch)} conversations")
        verdicts.extend(parse_verdict(text) for text in outputs)
    return verdicts
