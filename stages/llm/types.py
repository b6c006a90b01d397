"""What every caller and backend shares: messages, jobs, completions, the one error type, the judge callable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Messages = list[dict[str, str]]
# a batch of conversations -> one reply text each; what both LLM judges call (a fake in tests)
Ask = Callable[[list[Messages]], list[str]]


class LLMError(RuntimeError):
    """Every error of the LLM client: not configured, a missing key, a run stopped by a signal."""


@dataclass(frozen=True)
class SampleRequest:
    """Samples `samples` (indexes) of one prompt: what a caller asks for, in one round or several."""

    uid: str
    messages: Messages
    samples: tuple[int, ...]
    # the prompt hash and the samples' cache keys when the caller has them already (the generate
    # stage computes them for its rows): hashing every prompt twice costs ~15% of the client's CPU
    prompt_hash: str = ""
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """One request's worth of work: the missing samples of one prompt (one of them, or several with n)."""

    uid: str
    prompt_hash: str
    messages: Messages
    samples: tuple[int, ...]
    keys: tuple[str, ...]
    est_tokens: int  # prompt estimate + max_tokens per sample: the tokens-per-minute and budget reserve

    @property
    def prompt_tokens_est(self) -> int:
        return sum(len(m.get("content") or "") for m in self.messages) // 3


@dataclass(frozen=True)
class Choice:
    content: str | None
    reasoning_content: str | None
    finish_reason: str | None
    completion_tokens: int | None = None  # when the backend counts per choice (vLLM); else shared out


@dataclass
class Completion:
    """A successful response: k choices and the usage of the whole request."""

    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str | None = None


class RequestError(LLMError):
    """A failed attempt. `kind` is a short label for reports (http_429, timeout, connection, malformed...).
    `usage` is (prompt, completion) tokens when the server reported what it billed for the failure."""

    def __init__(
        self,
        kind: str,
        message: str,
        retryable: bool,
        retry_after: float | None = None,
        usage: tuple[int, int] | None = None,
    ):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.usage = usage

    def detail(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message[:500]}


class Backend(Protocol):
    async def complete(self, job: Job, n: int, seed: int | None) -> Completion: ...

    async def aclose(self) -> None: ...


def redact(text: str, secrets: list[str]) -> str:
    """Remove secrets from text that may end up in a report (an error body can echo a header)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
