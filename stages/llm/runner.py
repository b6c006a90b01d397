"""The async request loop: workers, an AIMD window, limits, retries, a cache commit per sample.

Each job ends in exactly one of three ways for each of its samples: committed to the cache,
recorded as failed (with the error kind and message), or not sent because sending stopped (a
budget reached, SIGINT/SIGTERM). Nothing else can happen to a sample, which is what lets a caller
account for every expected row.

Timeouts: unless `timeout_s` is set, a request's timeout is derived from `max_tokens` and the
decoding speed: 1 s + 2 x max_tokens / (the 10th percentile of the per-choice tokens/s measured
on the last 64 successful requests; `tokens_per_s` until 8 are measured). A request already in
flight gets the new deadline when the estimate changes, so a hung request is cancelled and retried
after seconds, not minutes, while the other requests go on.

Stopping: `stop()` (called from a signal handler or when the budget would be exceeded) stops
sending; requests in flight finish and are committed, for up to `grace_s`, then are cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from stages.llm.cache import SampleCache
from stages.llm.config import LLMConfig
from stages.llm.limits import Limiter, Window, backoff_s
from stages.llm.progress import LiveProgress, Stats
from stages.llm.types import Backend, Completion, Job, RequestError, redact

MEASURED_MIN = 8  # successful requests before the measured speed replaces the assumed one
FIRST_BYTE_S = 1.0
NOT_BILLED = ("http_429", "http_400", "http_401", "http_403", "http_404", "http_422", "budget_exhausted")


def sample_records(completion: Completion, config: LLMConfig, batch: bool = False) -> list[dict[str, Any]]:
    """One cache record per choice; usage and cost of the request are shared out between its choices."""
    k = len(completion.choices)
    prices = config.prices
    prompt_cost = prices.cost(completion.prompt_tokens, 0, batch) / k  # the prompt is billed once per request
    shares = [completion.completion_tokens // k + (i < completion.completion_tokens % k) for i in range(k)]
    if all(c.completion_tokens is not None for c in completion.choices):  # exact counts (vLLM)
        shares = [c.completion_tokens for c in completion.choices]
    return [
        {
            "content": choice.content,
            "reasoning_content": choice.reasoning_content,
            "finish_reason": choice.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": share,
            "latency_s": round(completion.latency_s, 4),
            "cost_usd": prompt_cost + prices.cost(0, share, batch),
            "served_model": completion.model,
            "created": time.time(),
        }
        for choice, share in zip(completion.choices, shares, strict=True)
    ]


class Speed:
    """Per-choice decoding speed of recent successful requests, and the timeout it implies."""

    def __init__(self, config: LLMConfig):
        self.config = config
        self.rates: deque[float] = deque(maxlen=64)
        self.measured = 0
        self._timeout = self._derive()

    def add(self, completion: Completion) -> bool:
        """Record a success; True when the derived timeout changed (in-flight deadlines must move)."""
        k = max(1, len(completion.choices))
        if completion.latency_s <= 0 or completion.completion_tokens <= 0:
            return False
        self.rates.append(completion.completion_tokens / k / completion.latency_s)
        self.measured += 1
        if self.measured % MEASURED_MIN:  # re-derived every 8 measurements, not on every response
            return False
        old, self._timeout = self._timeout, self._derive()
        return abs(old - self._timeout) > 0.05 * old

    def tokens_per_s(self, percentile: float = 10) -> float:
        if len(self.rates) < MEASURED_MIN:
            return self.config.tokens_per_s
        ordered = sorted(self.rates)  # 64 values: no need for numpy here, on the hot path
        return ordered[min(len(ordered) - 1, int(len(ordered) * percentile / 100))]

    def _derive(self) -> float:
        if self.config.timeout_s is not None:
            return self.config.timeout_s
        return FIRST_BYTE_S + 2 * self.config.max_tokens / self.tokens_per_s()

    def timeout(self) -> float:
        return self._timeout


class Runner:
    def __init__(
        self,
        backend: Backend | None,  # None: only commit/fail are used (the Batch API, the vLLM engine)
        cache: SampleCache,
        config: LLMConfig,
        stats: Stats,
        progress: LiveProgress,
        secrets: list[str] | None = None,
    ):
        self.backend = backend
        self.cache = cache
        self.config = config
        self.stats = stats
        self.progress = progress
        self.secrets = secrets or []
        self.limiter = Limiter(config.rpm, config.tpm)
        self.window = Window(config.concurrency)
        self.speed = Speed(config)
        self.failures: dict[str, dict[str, Any]] = {}
        self.stopping: str | None = None
        self._reserved = 0.0  # worst-case cost of the requests in flight (for the budget)
        self._in_flight: dict[int, tuple[float, Any]] = {}  # id -> (start, asyncio.Timeout)
        self._workers: list[asyncio.Task[None]] = []
        self._grace: asyncio.TimerHandle | None = None
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._rng = random.Random()

    async def run(self, jobs: Iterable[Job]) -> dict[str, dict[str, Any]]:
        """Process every job; returns {cache key: error detail} for samples that failed or were not sent."""
        self._queue = queue = asyncio.Queue(maxsize=self.config.concurrency * 2)
        # staggered starts: workers that start together on a fixed-latency server answer in lock-step
        # waves, and each response then waits for the whole wave to be processed
        step = self.config.ramp_up_s / self.config.concurrency
        self._workers = [
            asyncio.create_task(self._worker(queue, i * step)) for i in range(self.config.concurrency)
        ]
        try:
            for job in jobs:
                if self.stopping:
                    self.not_sent(job)
                    continue
                await queue.put(job)
            for _ in self._workers:
                await queue.put(None)
            await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            for worker in self._workers:
                worker.cancel()
            if self._grace is not None:
                self._grace.cancel()
            self.stats.concurrency_min = self.window.smallest
            self.stats.timeout_s = self.speed.timeout()
        return self.failures

    def stop(self, reason: str) -> None:
        """Stop sending. `budget`: requests in flight finish (their worst case is already set aside).
        A signal name: they get `grace_s` to finish, and a second signal cancels them at once."""
        if reason == "budget":
            self.stopping = self.stopping or reason
            self.stats.stopped = self.stopping
            return
        if self.stopping not in (None, "budget"):
            self._cancel_in_flight()
            return
        self.stopping = self.stats.stopped = reason
        self._grace = asyncio.get_running_loop().call_later(self.config.grace_s, self._cancel_in_flight)

    def _cancel_in_flight(self) -> None:
        """Grace period over: cancel the workers (their requests are lost) and empty the queue."""
        for worker in self._workers:
            worker.cancel()
        while not self._queue.empty():
            if (job := self._queue.get_nowait()) is not None:
                self.not_sent(job)

    async def _worker(self, queue: asyncio.Queue[Job | None], delay: float) -> None:
        await asyncio.sleep(delay)
        while (job := await queue.get()) is not None:
            if self.stopping:
                self.not_sent(job)
                continue
            try:
                await self._process(job)
            except asyncio.CancelledError:  # grace period over: the request in flight is lost, not recorded
                self.not_sent(job)
                raise

    def _reserve(self, job: Job) -> float | None:
        """The worst-case cost of sending `job`, set aside; None (and stop) if the budget cannot take it."""
        if self.config.budget_usd is None:
            return 0.0
        worst = self.config.prices.cost(job.prompt_tokens_est, self.config.max_tokens * len(job.samples))
        if self.stats.total_cost_usd + self._reserved + worst > self.config.budget_usd:
            self.stop("budget")
            return None
        self._reserved += worst
        return worst

    async def _process(self, job: Job) -> None:
        attempt = 0
        while job.samples:
            n = len(job.samples)
            seed = None if self.config.seed is None else self.config.seed + job.samples[0]
            await self.limiter.acquire(job.est_tokens)
            await self.window.enter()
            worst = None if self.stopping else self._reserve(job)
            if worst is None:
                self.window.leave()
                self.not_sent(job)
                return
            self.stats.attempts += 1
            started = time.perf_counter()
            try:
                completion = await self._send(job, n, seed)
            except RequestError as exc:
                error = exc
            except Exception as exc:  # a bug or an unknown transport error: the sample fails, the run goes on
                error = RequestError(
                    "unexpected", redact(f"{type(exc).__name__}: {exc}", self.secrets), False
                )
            else:
                self.limiter.settle(job.est_tokens, completion.prompt_tokens + completion.completion_tokens)
                self.window.success()
                if self.speed.add(completion):
                    self._move_deadlines()
                job = self.commit(job, completion)
                continue
            finally:
                self._reserved -= worst
                self.window.leave()
            self.account_failure(job, error, time.perf_counter() - started)
            if error.kind == "http_429":
                self.window.throttled(error.retry_after)
            if self.stopping or not (error.retryable and attempt < self.config.max_retries):
                self.fail(job, error)
                return
            self.stats.retries[error.kind] += 1
            delay = backoff_s(attempt, self.config.backoff_base_s, self.config.backoff_max_s, self._rng)
            if error.retry_after is not None:
                delay = error.retry_after
            elif error.kind == "timeout" and attempt == 0:
                delay = 0.0  # it has just waited its whole timeout: a second wait only lengthens the tail
            attempt += 1
            self.progress.update()
            await asyncio.sleep(delay)

    async def _send(self, job: Job, n: int, seed: int | None) -> Completion:
        """One attempt under the current derived timeout (moved while in flight when it changes)."""
        timeout = self.speed.timeout()
        reply = self.backend.complete(job, n, seed)  # type: ignore[union-attr]
        try:
            if not hasattr(asyncio, "timeout"):  # Python 3.10: a fixed deadline per attempt
                return await asyncio.wait_for(reply, timeout)
            token = id(asyncio.current_task())
            async with asyncio.timeout(timeout) as deadline:
                self._in_flight[token] = (asyncio.get_running_loop().time(), deadline)
                try:
                    return await reply
                finally:
                    self._in_flight.pop(token, None)
        except (TimeoutError, asyncio.TimeoutError):
            raise RequestError(
                "timeout", f"no response within {self.speed.timeout():.1f}s", retryable=True
            ) from None

    def _move_deadlines(self) -> None:
        timeout = self.speed.timeout()
        for started, deadline in self._in_flight.values():
            if not deadline.expired():
                deadline.reschedule(started + timeout)

    def account_failure(self, job: Job, error: RequestError, elapsed_s: float) -> None:
        """What a failed attempt cost: the server's usage when it reported one, else an estimate."""
        stats = self.stats
        stats.failed_attempts += 1
        if error.usage is not None:
            tokens_in, tokens_out = error.usage
            stats.failed_cost_reported_usd += self.config.prices.cost(tokens_in, tokens_out)
        else:
            tokens_in, tokens_out = failure_usage(
                job, error, elapsed_s, self.speed.tokens_per_s(50), self.config
            )
            stats.failed_cost_estimated_usd += self.config.prices.cost(tokens_in, tokens_out)
        stats.failed_tokens_in += tokens_in
        stats.failed_tokens_out += tokens_out

    def commit(self, job: Job, completion: Completion, batch: bool = False) -> Job:
        """Commit the returned samples; the job that is left asks for any the server did not return."""
        records = sample_records(completion, self.config, batch)[: len(job.samples)]
        for key, record in zip(job.keys, records, strict=False):
            self.cache.put(key, record)
            self.stats.truncated += record["finish_reason"] == "length"
        stats = self.stats
        stats.requests += 1
        stats.batch_requests += batch
        stats.samples_generated += len(records)
        stats.tokens_in += completion.prompt_tokens
        stats.tokens_out += completion.completion_tokens
        stats.cost_usd += self.config.prices.cost(
            completion.prompt_tokens, completion.completion_tokens, batch
        )
        stats.latencies.append(completion.latency_s)
        self.progress.update(len(records))
        if len(records) < len(job.samples):
            stats.retries["short_n"] += 1
        k = len(records)
        return dataclasses.replace(job, samples=job.samples[k:], keys=job.keys[k:])

    def fail(self, job: Job, error: RequestError) -> None:
        detail = error.detail()
        for key in job.keys:
            self.failures[key] = detail
        self.stats.errors[error.kind] += len(job.keys)
        self.stats.samples_failed += len(job.keys)
        self.progress.update(len(job.keys))

    def not_sent(self, job: Job) -> None:
        """A job never (fully) sent because sending stopped: `budget_exhausted` or `stopped`."""
        kind = "budget_exhausted" if self.stopping == "budget" else "stopped"
        reason = f"sending stopped ({self.stopping}) before this sample was requested"
        self.fail(job, RequestError(kind, reason, retryable=True))


def failure_usage(
    job: Job, error: RequestError, elapsed_s: float, tokens_per_s: float, config: LLMConfig
) -> tuple[int, int]:
    """Estimated (prompt, completion) tokens billed for a failed attempt without reported usage.

    Rejected requests (429, 4xx) are not billed. Otherwise the prompt is counted, plus what the
    server would have decoded at the measured median speed until the failure, capped at
    max_tokens per sample: a 500 returned at once costs about the prompt, a timeout the tokens
    decoded before the client gave up (providers bill a cancelled generation).
    """
    if error.kind in NOT_BILLED or (error.kind.startswith("http_4") and error.kind != "http_408"):
        return 0, 0
    k = len(job.samples)
    decoded = min(config.max_tokens * k, int(tokens_per_s * elapsed_s * k))
    return job.prompt_tokens_est, decoded
