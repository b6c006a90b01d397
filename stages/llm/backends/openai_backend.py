"""Any OpenAI-compatible chat endpoint (OpenAI, DeepSeek, Together, vLLM/SGLang/llama.cpp servers).

Two clients speak the same protocol code (request body, response parsing, error kinds):

    http_client: aiohttp   (default) one pooled aiohttp session posting /chat/completions.
                           ~0.25 ms of client CPU per request.
    http_client: openai    `AsyncOpenAI` (aiohttp transport when available), its own retries off.
                           ~0.8 ms per request: the SDK builds and deep-copies request options,
                           which at 640 requests/s on a 2-core box costs the throughput target.

Neither retries nor times out on its own: the runner does both, so every attempt is counted by kind,
its cost accounted, and a 429 narrows the window of requests in flight. Bodies are parsed here, not by the SDK: malformed JSON is a retryable error,
and non-standard fields (`reasoning_content`, `reasoning`) are kept. The API key is sent in the
Authorization header and removed from every error message (a server may echo it back).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from stages.llm.config import LLMConfig
from stages.llm.limits import retry_after_s
from stages.llm.types import Choice, Completion, Job, LLMError, RequestError, redact

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRYABLE_STATUS = {408, 409, 425, 429}
HARD_TIMEOUT_S = 24 * 3600  # the transport's own cap; the runner's (derived) timeout fires first


def read_credentials(config: LLMConfig) -> tuple[str, str]:
    """(base URL, API key): the URL as given or from `base_url_env`, the key from the variable
    `api_key_env` names; the error names the variable, never a value."""
    from_env = os.environ.get(config.base_url_env) if config.base_url_env else None
    base_url = config.base_url or from_env or DEFAULT_BASE_URL
    if not config.api_key_env:
        return base_url, "no-key"
    key = os.environ.get(config.api_key_env)
    if not key:
        raise LLMError(f"llm: environment variable {config.api_key_env} (api_key_env) is not set")
    return base_url, key


def request_timeout(config: LLMConfig) -> float:
    return config.timeout_s * 1.5 + 5 if config.timeout_s else HARD_TIMEOUT_S


def make_backend(config: LLMConfig, base_url: str, api_key: str) -> AiohttpBackend | OpenAISDKBackend:
    cls = OpenAISDKBackend if config.http_client == "openai" else AiohttpBackend
    return cls(config, base_url, api_key)


# ---- protocol: shared by both clients ----


def request_body(config: LLMConfig, job: Job, n: int, seed: int | None) -> dict[str, Any]:
    """The JSON body of a chat completion request for the first `n` samples of `job`."""
    body: dict[str, Any] = {
        "model": config.model,
        "messages": job.messages,
        "temperature": config.temperature,
        "top_p": config.top_p,
        config.max_tokens_param: config.max_tokens,
    }
    if n > 1:
        body["n"] = n
    if seed is not None:
        body["seed"] = seed
    return {**body, **config.extra_body}


def request_headers(job: Job, n: int) -> dict[str, str]:
    """Lets a proxy, a log or a fake server tell which samples a request is for."""
    return {"X-Longcot-Samples": f"{job.prompt_hash}:{','.join(map(str, job.samples[:n]))}"}


def parse_completion(text: str, latency_s: float, clean: Any = str) -> Completion:
    """A chat completion body -> Completion; anything unusable is a retryable `malformed` error."""
    try:
        body = json.loads(text)
    except ValueError:
        raise RequestError(
            "malformed", f"response is not JSON: {clean(text[:200])!r}", retryable=True
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        error = body.get("error") if isinstance(body, dict) else None
        raise RequestError(
            "malformed", f"no choices in response: {clean(str(error or text)[:200])}", retryable=True
        )
    choices = []
    for choice in sorted(body["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise RequestError("malformed", "a choice has no message", retryable=True)
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        choices.append(Choice(message.get("content"), reasoning, choice.get("finish_reason")))
    usage = body.get("usage") or {}
    return Completion(
        choices=choices,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency_s,
        model=body.get("model"),
    )


def status_error(
    status: int, message: str, headers: Mapping[str, str] | None, body: str = ""
) -> RequestError:
    """An HTTP error status -> RequestError: 408/409/425/429 and 5xx are worth retrying, other 4xx not.
    An error body with a `usage` object (some servers bill a failed generation) keeps it."""
    retryable = status in RETRYABLE_STATUS or status >= 500
    return RequestError(f"http_{status}", message, retryable, retry_after_s(headers), reported_usage(body))


def reported_usage(text: str) -> tuple[int, int] | None:
    """(prompt, completion) tokens from a body's `usage`, when there is one."""
    if '"usage"' not in text:
        return None
    try:
        usage = json.loads(text).get("usage")
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (ValueError, AttributeError, TypeError):
        return None


def _error_message(status: int, text: str) -> str:
    try:
        error = json.loads(text).get("error")
        detail = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        detail = None
    return f"Error code: {status} - {detail or text[:300]}"


# ---- clients ----


class AiohttpBackend:
    def __init__(self, config: LLMConfig, base_url: str, api_key: str):
        import aiohttp

        self._aiohttp = aiohttp
        self.config = config
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._secrets = [api_key]
        self._session: Any = None

    def _open(self) -> Any:
        if self._session is None:  # inside the running loop, where aiohttp wants to be created
            aiohttp = self._aiohttp
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=request_timeout(self.config)),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "longcot-generate"},
            )
        return self._session

    async def complete(self, job: Job, n: int, seed: int | None) -> Completion:
        data = json.dumps(request_body(self.config, job, n, seed), ensure_ascii=False).encode()
        headers = {**self._headers, **request_headers(job, n)}
        started = time.perf_counter()
        try:
            async with self._open().post(self.url, data=data, headers=headers) as response:
                text = (await response.read()).decode("utf-8", errors="replace")  # JSON is UTF-8: no sniffing
                if response.status >= 400:
                    message = redact(_error_message(response.status, text), self._secrets)
                    raise status_error(response.status, message, response.headers, text)
        except asyncio.TimeoutError:
            timeout = request_timeout(self.config)
            raise RequestError("timeout", f"no response within {timeout:.0f}s", retryable=True) from None
        except self._aiohttp.ClientError as exc:
            raise RequestError(
                "connection", redact(f"{type(exc).__name__}: {exc}", self._secrets), True
            ) from None
        return parse_completion(text, time.perf_counter() - started, lambda t: redact(t, self._secrets))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def import_openai(purpose: str) -> Any:
    """The openai SDK (the `teacher` extra), or an ImportError that names the extra."""
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{purpose} needs the `teacher` extra: pip install 'longcot[teacher]'") from exc
    return openai


class OpenAISDKBackend:
    def __init__(self, config: LLMConfig, base_url: str, api_key: str):
        openai = import_openai("http_client 'openai'")
        self._openai = openai
        self.config = config
        self._secrets = [api_key]
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=request_timeout(config),
            http_client=_sdk_transport(openai),
        )
        module = openai._base_client  # the SDK's HTTP library: httpx, or httpx2 in newer releases
        self._response_type = (getattr(module, "httpx2", None) or module.httpx).Response

    async def complete(self, job: Job, n: int, seed: int | None) -> Completion:
        started = time.perf_counter()
        try:
            # `client.post` (the SDK's documented raw request) skips the typed-params transform of
            # `chat.completions.create`, which costs more CPU than the HTTP exchange itself
            response = await self.client.post(
                "/chat/completions",
                body=request_body(self.config, job, n, seed),
                cast_to=self._response_type,
                options={"headers": request_headers(job, n)},
            )
            text = response.text
        except self._openai.APIStatusError as exc:
            message = redact(str(exc.message), self._secrets)
            headers = dict(exc.response.headers) if exc.response is not None else None
            body = exc.response.text if exc.response is not None else ""
            raise status_error(exc.status_code, message, headers, body) from None
        except self._openai.APITimeoutError as exc:
            cause = _cause(exc)
            if (
                "disconnect" in cause.lower()
            ):  # the aiohttp transport reports a dropped connection as a timeout
                raise RequestError("connection", redact(cause, self._secrets), retryable=True) from None
            timeout = request_timeout(self.config)
            raise RequestError("timeout", f"no response within {timeout:.0f}s", retryable=True) from None
        except self._openai.APIConnectionError as exc:
            raise RequestError("connection", redact(_cause(exc), self._secrets), retryable=True) from None
        return parse_completion(text, time.perf_counter() - started, lambda t: redact(t, self._secrets))

    async def aclose(self) -> None:
        await self.client.close()


def _sdk_transport(openai: Any) -> Any:
    try:
        import aiohttp  # noqa: F401

        return openai.DefaultAioHttpClient()
    except (ImportError, AttributeError, RuntimeError):
        return None


def _cause(exc: BaseException) -> str:
    """The innermost message of a connection error (the SDK's own is just 'Connection error.')."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"
