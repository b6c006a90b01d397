"""What every backend takes and returns, so the runner, cache and rows don't care where samples come from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Job:
    """One request's worth of work: the missing samples of one problem (one of them, or several with n)."""

    uid: str
    prompt_hash: str
    messages: Messages
    samples: tuple[int, ...]
    keys: tuple[str, ...]
    est_tokens: int  # for the tokens-per-minute budget: prompt estimate + max_tokens per sample


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


class RequestError(Exception):
    """A failed attempt. `kind` is a short label for reports (http_429, timeout, connection, malformed...)."""

    def __init__(self, kind: str, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

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
