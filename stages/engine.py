"""Where the runner's map phases run: in this process, on a pool of worker processes, or on Ray
(stages/engine_ray.py: Ray is an optional extra, chosen by name in flows/build.py).

Workers are spawned, not forked: polars and torch keep thread pools that a fork copies in a broken
state. The pool is started on first use and reused by every stage of a run, so its start-up (importing
polars and the stage modules, ~1 s a worker) is paid once; `run_steps` closes it once no stage left
runs on it, so idle workers do not wait through the driver-only stages at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


UNIT_ROWS_ENV = "LONGCOT_UNIT_ROWS"
DEFAULT_UNIT_ROWS = 100_000


class Engine(Protocol):
    workers: int
    unit_rows: int  # rows of input per map unit: the grain of parallelism (and of output shards)

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], resources: dict[str, float] | None = None
    ) -> list[R]: ...

    def close(self) -> None: ...


_M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """At most MALLOC_ARENAS glibc malloc arenas in this process, unless MALLOC_ARENA_MAX says
    otherwise: by default every thread that allocates may get an arena of its own (up to 8 a core),
    and the per-batch thread pools (numpy chunks, polars slices) left each worker ~100 MB of arena
    heaps that malloc_trim cannot give back. 1M-row minhash dedup: peak 1,394-1,435 MB -> 1,234-1,291
    MB, the same wall time. Call before threads allocate (worker start, CLI start)."""
    if "MALLOC_ARENA_MAX" not in os.environ:
        glibc_call("mallopt", _M_ARENA_MAX, MALLOC_ARENAS)


def glibc_call(function: str, *args: int) -> None:
    """Call one of glibc's malloc tuning functions (mallopt, malloc_trim); a no-op without glibc."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            getattr(ctypes.CDLL("libc.so.6"), function)(*args)


def release_memory(freeze: bool = False) -> None:
    """Hand freed memory back to the OS: glibc keeps a process's freed heap for reuse, so an idle
    worker would hold its last unit's peak (~250 MB at 1M rows) while the driver reduces.

    `freeze` (in a pool worker, a process of ours alone): what survives the collection is moved out
    of the collector's view, so the next call scans only what the next unit left behind instead of
    every imported module's objects again (~20 ms a call: 2-3 CPU-s over a 1M-row dedup's units).
    Frozen objects are still freed when their last reference goes; only a cycle among them is not."""
    gc.collect()
    if freeze:
        gc.freeze()
    if "pyarrow" in sys.modules:  # its allocator keeps freed blocks too (JSON reading, Parquet writing)
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    glibc_call("malloc_trim", 0)


def _start_worker() -> None:
    """A pool worker's set-up. A Ctrl-C reaches the whole process group: the driver stops the run and
    reports it; a worker just ends (the default action, no KeyboardInterrupt traceback per worker),
    so a unit still running stops writing before the driver removes its .partial/ directory."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    limit_malloc_arenas()


class _Releasing:
    """`fn` run on a worker, then `release_memory` (picklable, unlike a closure)."""

    def __init__(self, fn: Callable[[T], R]):
        self.fn = fn

    def __call__(self, item: T) -> R:
        try:
            return self.fn(item)
        finally:
            release_memory(freeze=True)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LocalEngine:
    """Map phases on `workers` processes of this machine (1: in this process, no pool)."""

    def __init__(self, workers: int | None = None, unit_rows: int | None = None):
        self.workers = max(1, workers or default_workers())
        self.unit_rows = unit_rows or int(os.environ.get(UNIT_ROWS_ENV, DEFAULT_UNIT_ROWS))
        self._pool: ProcessPoolExecutor | None = None

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], resources: dict[str, float] | None = None
    ) -> list[R]:
        """fn over items, results in item order (whatever order the workers finish in). `resources`
        (a stage's per-unit GPUs...) is for a cluster engine: one machine's processes share its devices."""
        todo = list(items)
        if self.workers == 1 or len(todo) <= 1:
            return [fn(item) for item in todo]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
            )
        futures = [self._pool.submit(_Releasing(fn), item) for item in todo]
        try:
            return [f.result() for f in futures]
        except BaseException:
            # a failed unit: the others must stop writing before the caller removes .partial/
            for f in futures:
                f.cancel()
            wait(futures)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
