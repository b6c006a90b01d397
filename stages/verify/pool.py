"""A small process pool that never loses an item: a hung or crashed worker is killed and replaced,
its current item gets a `Failure`, and the rest of its chunk goes back in the queue.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot kill one stuck task (a sympy call stuck
in C ignores `signal.alarm`), and a dead worker breaks the whole executor. Workers are started with
`spawn` so they are safe to start from threaded callers (Prefect) and run items in their main
thread, where math-verify's `signal.alarm` timeouts work.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

_CONTEXT = mp.get_context("spawn")
_STARTED = -1  # message index: the worker has unpickled a chunk (imports done), items start now
_BOOT_S = 300.0  # a worker may take this long to start and import the function's module


@dataclass(frozen=True)
class Failure:
    """Stands in for the result of an item whose worker timed out, crashed or raised."""

    reason: str  # timeout | crash | error
    detail: str


def _worker(conn: Connection) -> None:
    """Run (index, fn, item) chunks; send one (index, result) per item as soon as it is done."""
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        conn.send((_STARTED, None))
        for index, fn, item in chunk:
            try:
                result = fn(item)
            except BaseException as exc:  # an item's failure is its verdict, not the worker's end
                result = Failure("error", repr(exc)[:500])
            conn.send((index, result))


class _Slot:
    """One worker process and the chunk it is working through."""

    def __init__(self) -> None:
        self.conn, child = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.todo: deque[tuple[int, Any]] = deque()
        self.since = 0.0  # when the current item started
        self.started = False  # the chunk is unpickled: deadlines run from now on, not the boot limit

    def assign(self, fn: Callable[[Any], Any], chunk: list[tuple[int, Any]]) -> None:
        self.todo = deque(chunk)
        self.since = time.monotonic()
        self.started = False
        self.conn.send([(i, fn, item) for i, item in chunk])

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool:
    """`map(fn, items)` across `workers` processes with a hard per-item deadline. Reusable; close it."""

    def __init__(self, workers: int, chunk_size: int = 4):
        self.workers = max(1, workers)
        self.chunk_size = max(1, chunk_size)
        self.replaced = 0  # workers killed and replaced (timeouts + crashes), for reports
        self._slots: list[_Slot] = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for slot in self._slots:
            with contextlib.suppress(OSError):
                slot.conn.send(None)
            slot.process.join(2)
            if slot.process.is_alive():
                slot.kill()
        self._slots = []

    @staticmethod
    def _limit(slot: _Slot, deadline: Callable[[Any], float]) -> float:
        return deadline(slot.todo[0][1]) if slot.started else _BOOT_S

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        deadline_s: float | Callable[[Any], float],
    ) -> list[Any]:
        """Results in input order; an item whose worker passes `deadline_s` or dies gets a `Failure`."""
        deadline = deadline_s if callable(deadline_s) else (lambda _item: float(deadline_s))
        results: list[Any] = [None] * len(items)
        done = [False] * len(items)
        queue = deque(
            [(i, items[i]) for i in range(s, min(s + self.chunk_size, len(items)))]
            for s in range(0, len(items), self.chunk_size)
        )
        while len(self._slots) < min(self.workers, len(queue)):
            self._slots.append(_Slot())
        busy: dict[Connection, _Slot] = {}

        def settle(slot: _Slot, failure: Failure) -> None:
            """Replace a dead or stuck worker: fail its current item, requeue the rest of its chunk."""
            index, _ = slot.todo.popleft()
            results[index], done[index] = failure, True
            if slot.todo:
                queue.appendleft(list(slot.todo))
            busy.pop(slot.conn, None)
            slot.kill()
            self._slots[self._slots.index(slot)] = _Slot()
            self.replaced += 1

        while queue or busy:
            for slot in self._slots:
                if queue and slot.conn not in busy:
                    slot.assign(fn, queue.popleft())
                    busy[slot.conn] = slot
            now = time.monotonic()
            wake = min(s.since + self._limit(s, deadline) for s in busy.values()) - now
            for conn in wait(list(busy), timeout=max(0.0, wake)):
                slot = busy[conn]
                try:
                    index, result = conn.recv()
                except (EOFError, OSError):
                    slot.process.join(1)
                    settle(slot, Failure("crash", f"worker died (exit code {slot.process.exitcode})"))
                    continue
                slot.since = time.monotonic()
                if index == _STARTED:
                    slot.started = True
                    continue
                results[index], done[index] = result, True
                slot.todo.popleft()
                if not slot.todo:
                    del busy[conn]
            now = time.monotonic()
            for slot in list(busy.values()):
                limit = self._limit(slot, deadline)
                if now - slot.since > limit:
                    settle(slot, Failure("timeout", f"no result after {limit:.0f}s; worker killed"))
        if not all(done):
            raise RuntimeError(
                "worker pool lost an item"
            )  # unreachable by construction; guards the invariant
        return results
