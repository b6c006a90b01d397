"""Client-side limits: requests and tokens per minute, a shared pause after a 429, and backoff.

Staying under the provider's limits is cheaper than bouncing off them: a rate-limit storm with
64 workers retrying independently keeps the account throttled, so a 429 that names a Retry-After
pauses every worker, not just the one that got it.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Mapping


class TokenBucket:
    """`per_minute` units a minute, bursts of up to `burst_s` seconds' worth; may go into debt."""

    def __init__(self, per_minute: float, burst_s: float = 6.0):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, amount: float) -> None:
        """Wait until the bucket is positive, then take `amount` (a large request may overdraw)."""
        while True:
            self._refill()
            if self.level >= min(amount, self.capacity):
                self.level -= amount
                return
            await asyncio.sleep((min(amount, self.capacity) - self.level) / self.rate)

    def refund(self, amount: float) -> None:
        """Give back an over-estimate (or take more, with a negative amount) once usage is known."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class Limiter:
    def __init__(self, rpm: int | None = None, tpm: int | None = None):
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self.paused_until = 0.0

    async def acquire(self, tokens: int) -> None:
        while (wait := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        if self.requests:
            await self.requests.acquire(1)
        if self.tokens:
            await self.tokens.acquire(tokens)

    def settle(self, estimated: int, used: int) -> None:
        if self.tokens:
            self.tokens.refund(estimated - used)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half fixed (so it grows), half random (so workers spread)."""
    ceiling = min(cap, base * 2**attempt)
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def retry_after_s(headers: Mapping[str, str] | None, cap: float = 600.0) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lower:
            return min(cap, max(0.0, float(lower["retry-after-ms"]) / 1000))
        value = lower.get("retry-after")
        if value is None:
            return None
        try:
            return min(cap, max(0.0, float(value)))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return min(cap, max(0.0, when.timestamp() - time.time()))
    except (TypeError, ValueError, OverflowError):
        return None
