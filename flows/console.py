"""The console every command prints to, and the run's log file (runs/<run>/run.log) that keeps a copy.

`say` prints to the terminal and, while a run log is open, appends the same line (without colour)
to the log; Python log records of longcot and Prefect (warnings and above, all of them under --debug)
go to the log too, so a run directory tells afterwards what the console showed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console()
_log: list[Console] = []


def say(*objects: Any, **options: Any) -> None:
    console.print(*objects, **options)
    for log in _log:
        log.print(*objects, **options)


@contextmanager
def run_log(path: Path, level: int = logging.WARNING) -> Iterator[Path]:
    """Append what the console shows (and log records at `level` and above) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        log = Console(file=f, no_color=True, width=120, soft_wrap=True, log_path=False)
        handler = logging.StreamHandler(f)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        loggers = [logging.getLogger(name) for name in ("prefect", "stages", "flows")]
        for logger in loggers:
            logger.addHandler(handler)
        _log.append(log)
        try:
            yield path
        finally:
            _log.remove(log)
            for logger in loggers:
                logger.removeHandler(handler)
