"""Run statistics (for report.json) and the live progress bar that shows them while a run is going."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.errors import LiveError
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn


@dataclass
class Stats:
    samples_expected: int = 0
    cache_hits: int = 0
    samples_generated: int = 0
    samples_failed: int = 0
    truncated: int = 0
    requests: int = 0  # successful requests
    attempts: int = 0  # every HTTP call / engine call, successful or not
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0  # successful requests
    batch_requests: int = 0  # of `requests`, served by the Batch API (priced at the batch rate)
    failed_attempts: int = 0
    failed_tokens_in: int = 0
    failed_tokens_out: int = 0
    failed_cost_reported_usd: float = 0.0  # failures whose usage the server reported
    failed_cost_estimated_usd: float = 0.0  # failures without usage: estimated (see runner.failure_usage)
    stopped: str | None = None  # why sending stopped early: budget, SIGTERM, SIGINT
    concurrency_min: float | None = None  # the AIMD window's low point
    timeout_s: float | None = None  # the request timeout in force at the end (derived or configured)
    retries: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # samples that failed for good, by kind
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    request_phase_s: float | None = None  # set when the last request is done (before rows are written)

    @property
    def failed_cost_usd(self) -> float:
        return self.failed_cost_reported_usd + self.failed_cost_estimated_usd

    @property
    def total_cost_usd(self) -> float:
        return self.cost_usd + self.failed_cost_usd

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> dict[str, Any]:
        wall = self.request_phase_s or self.elapsed()
        lat = np.percentile(self.latencies, [50, 90, 99]).round(4).tolist() if self.latencies else [None] * 3
        return {
            "samples_expected": self.samples_expected,
            "cache_hits": self.cache_hits,
            "samples_generated": self.samples_generated,
            "samples_failed": self.samples_failed,
            "truncated": self.truncated,
            "requests": self.requests,
            "attempts": self.attempts,
            "retries": sum(self.retries.values()),
            "retries_by_kind": dict(self.retries.most_common()),
            "errors_by_kind": dict(self.errors.most_common()),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 6),
            "batch_requests": self.batch_requests,
            "failed_attempts": self.failed_attempts,
            "failed_tokens_in": self.failed_tokens_in,
            "failed_tokens_out": self.failed_tokens_out,
            "failed_cost_usd": round(self.failed_cost_usd, 6),
            "failed_cost_estimated_usd": round(self.failed_cost_estimated_usd, 6),
            "total_cost_usd": round(self.total_cost_usd, 6),
            "stopped": self.stopped,
            "concurrency_min": None if self.concurrency_min is None else round(self.concurrency_min, 1),
            "timeout_s": None if self.timeout_s is None else round(self.timeout_s, 2),
            "latency_s": dict(zip(("p50", "p90", "p99"), lat, strict=True)),
            "request_phase_s": round(wall, 3),
            "wall_s": round(self.elapsed(), 3),
            "output_tokens_per_s": round(self.tokens_out / wall, 1) if wall > 0 else None,
        }


class LiveProgress:
    """requests done / total, tokens/s, retries, cost so far and ETA; silent when disabled."""

    def __init__(self, stats: Stats, total: int, enabled: bool = True, label: str = "generate"):
        self.stats = stats
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} samples"),
            TextColumn("{task.fields[rate]:.0f} tok/s"),
            TextColumn("retries {task.fields[retries]}"),
            TextColumn("${task.fields[cost]:.4f}"),
            TimeRemainingColumn(),
            disable=not enabled,
            transient=False,
        )
        self._task = self._progress.add_task(label, total=total, rate=0.0, retries=0, cost=0.0)

    def __enter__(self) -> LiveProgress:
        try:
            self._progress.start()
        except LiveError:  # the caller already shows a live display on this console: stay quiet
            self.enabled = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        self._progress.stop()

    def describe(self, text: str) -> None:
        """Replace the label (the Batch API: which batch, its status and its item counts)."""
        if self.enabled:
            self._progress.update(self._task, description=text)

    def update(self, advance: int = 0) -> None:
        if not self.enabled:
            return
        s = self.stats
        wall = max(s.elapsed(), 1e-9)
        self._progress.update(
            self._task,
            advance=advance,
            rate=s.tokens_out / wall,
            retries=sum(s.retries.values()),
            cost=s.total_cost_usd,
        )
