"""The CPU teacher's thread count follows the cores that are idle when it starts."""

from __future__ import annotations

import os

import psutil
import pytest

from stages.llm.teacher_server import default_threads


@pytest.mark.parametrize(
    ("busy_percent", "expected"), [(0.0, 4), (30.0, 3), (50.0, 2), (90.0, 1), (100.0, 1)]
)
def test_threads_are_the_idle_cores(
    monkeypatch: pytest.MonkeyPatch, busy_percent: float, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval: busy_percent)
    assert default_threads() == expected
