"""Client-side limits: requests and tokens per minute, an AIMD window on requests in flight, backoff.

Staying under the provider's limits is cheaper than bouncing off them, but pausing every worker on
each 429 (what this module did first) stalls a whole run for one throttled request. Instead 429s
halve the number of requests allowed in flight and each success adds 1/window back, TCP's
additive-increase / multiplicative-decrease: the request rate settles just under the provider's
limit while the other requests go on. A decrease needs 429s on at least `THROTTLED_SHARE` of the
last responses (stray 429s are not congestion; being over a limit gives many; 429s are not billed) and happens at most
once per Retry-After period (its 429s all report the same overload). The request that got the 429
waits its Retry-After before it is tried again.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import deque
from collections.abc import Mapping

THROTTLED_SHARE = 0.2  # of the last max(50, 2 x concurrency) responses


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

    async def acquire(self, tokens: int) -> None:
        if self.requests:
            await self.requests.acquire(1)
        if self.tokens:
            await self.tokens.acquire(tokens)

    def settle(self, estimated: int, used: int) -> None:
        if self.tokens:
            self.tokens.refund(estimated - used)


class Window:
    """Requests allowed in flight: between 1 and `ceiling`, halved on a 429, +1/window per success."""

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.size = float(ceiling)
        self.in_flight = 0
        self.smallest = float(ceiling)
        self.decreases = 0
        self._calm_until = 0.0
        self._recent: deque[bool] = deque(maxlen=max(50, 2 * ceiling))  # True: that response was a 429
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def enter(self) -> None:
        """Wait for a free place (no waiting and no lock while there is one: the common case)."""
        while self.in_flight >= max(1, int(self.size)):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        while self._waiters:  # wake the next waiter (it checks the window again)
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def success(self) -> None:
        self._recent.append(False)
        self.size = min(self.ceiling, self.size + 1 / self.size)

    def throttled(self, retry_after: float | None) -> None:
        """A 429: halve when 429s are a share of the recent responses and this period has not yet."""
        self._recent.append(True)
        now = time.monotonic()
        seen = max(len(self._recent), self._recent.maxlen // 2)  # (the first few responses are too few)
        if now < self._calm_until or sum(self._recent) < THROTTLED_SHARE * seen:
            return
        self.size = max(1.0, self.size / 2)
        self.smallest = min(self.smallest, self.size)
        self.decreases += 1
        self._calm_until = now + max(retry_after or 0.0, 0.5)


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
