"""The async request loop: a fixed pool of workers, limits, retries, and a cache commit per sample.

Each job ends in exactly one of two ways for each of its samples: committed to the cache, or
recorded as failed (with the error kind and message). Nothing else can happen to a sample, which
is what lets the stage account for every expected row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from stages.generate.backends.base import Backend, Completion, Job, RequestError, redact
from stages.generate.cache import SampleCache
from stages.generate.config import GenerateConfig
from stages.generate.limits import Limiter, backoff_s
from stages.generate.progress import LiveProgress, Stats

T = TypeVar("T")


async def _within(awaitable: Awaitable[T], seconds: float) -> T:
    """`asyncio.timeout` where available (3.11+): unlike `wait_for` it creates no task per request."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def sample_records(completion: Completion, config: GenerateConfig) -> list[dict[str, Any]]:
    """One cache record per choice; usage and cost of the request are shared out between its choices."""
    k = len(completion.choices)
    prompt_cost = config.prices.cost(completion.prompt_tokens, 0) / k  # the prompt is billed once per request
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
            "cost_usd": prompt_cost + config.prices.cost(0, share),
            "served_model": completion.model,
            "created": time.time(),
        }
        for choice, share in zip(completion.choices, shares, strict=True)
    ]


class Runner:
    def __init__(
        self,
        backend: Backend,
        cache: SampleCache,
        config: GenerateConfig,
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
        self.failures: dict[str, dict[str, Any]] = {}
        self._rng = random.Random()
        # the client's own timeout should fire first; this only catches a transport that ignores it
        self._guard_s = config.timeout_s * 1.5 + 5

    async def run(self, jobs: Iterable[Job]) -> dict[str, dict[str, Any]]:
        """Process every job; returns {cache key: error detail} for samples that failed for good."""
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=self.config.concurrency * 2)
        # staggered starts: workers that start together on a fixed-latency server answer in lock-step
        # waves, and each response then waits for the whole wave to be processed
        step = self.config.ramp_up_s / self.config.concurrency
        workers = [asyncio.create_task(self._worker(queue, i * step)) for i in range(self.config.concurrency)]
        try:
            for job in jobs:
                await queue.put(job)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
        return self.failures

    async def _worker(self, queue: asyncio.Queue[Job | None], delay: float) -> None:
        await asyncio.sleep(delay)
        while (job := await queue.get()) is not None:
            await self._process(job)

    async def _process(self, job: Job) -> None:
        attempt = 0
        while job.samples:
            n = len(job.samples)
            seed = None if self.config.seed is None else self.config.seed + job.samples[0]
            await self.limiter.acquire(job.est_tokens)
            self.stats.attempts += 1
            try:
                completion = await _within(self.backend.complete(job, n, seed), self._guard_s)
            except RequestError as exc:
                error = exc
            except asyncio.TimeoutError:
                error = RequestError("timeout", f"no response within {self._guard_s:.0f}s", retryable=True)
            except Exception as exc:  # a bug or an unknown transport error: the sample fails, the run goes on
                error = RequestError(
                    "unexpected", redact(f"{type(exc).__name__}: {exc}", self.secrets), False
                )
            else:
                self.limiter.settle(job.est_tokens, completion.prompt_tokens + completion.completion_tokens)
                job = self.commit(job, completion)
                continue
            if not (error.retryable and attempt < self.config.max_retries):
                self.fail(job, error)
                return
            self.stats.retries[error.kind] += 1
            delay = backoff_s(attempt, self.config.backoff_base_s, self.config.backoff_max_s, self._rng)
            if error.retry_after is not None:
                delay = error.retry_after
                self.limiter.pause(error.retry_after)
            attempt += 1
            self.progress.update()
            await asyncio.sleep(delay)

    def commit(self, job: Job, completion: Completion) -> Job:
        """Commit the returned samples; the job that is left asks for any the server did not return."""
        records = sample_records(completion, self.config)[: len(job.samples)]
        for key, record in zip(job.keys, records, strict=False):
            self.cache.put(key, record)
            self.stats.truncated += record["finish_reason"] == "length"
        stats = self.stats
        stats.requests += 1
        stats.samples_generated += len(records)
        stats.tokens_in += completion.prompt_tokens
        stats.tokens_out += completion.completion_tokens
        stats.cost_usd += self.config.prices.cost(completion.prompt_tokens, completion.completion_tokens)
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
