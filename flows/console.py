"""The console every command prints to, and the run's log file (runs/<run>/run.log) that keeps a copy.

`say` prints to the terminal and, while a run log is open, appends the same line (without colour)
to the log; Python log records of longcot (warnings and above, all of them under --debug) and the
error that ended a run go to the log too, so a run directory tells afterwards what the console showed.
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


def one_line(exc: BaseException) -> str:
    """An error as one readable line (pydantic errors as `field: problem`)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
    text = str(exc).strip()
    return text if text else type(exc).__name__


@contextmanager
def quiet_prefect(debug: bool) -> Iterator[None]:
    """Prefect logs a failed task's traceback at ERROR on the console; the one-line error is ours and
    the traceback is --debug's. Whatever PREFECT_LOGGING_LEVEL says, for the duration of a command."""
    if debug:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("prefect", "prefect.flow_runs", "prefect.task_runs")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def run_log(path: Path, level: int = logging.WARNING) -> Iterator[Path]:
    """Append what the console shows (and log records at `level` and above) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        log = Console(file=f, no_color=True, width=120, soft_wrap=True, log_path=False)
        handler = logging.StreamHandler(f)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        loggers = [logging.getLogger(name) for name in ("stages", "flows")]
        for logger in loggers:
            logger.addHandler(handler)
        _log.append(log)
        try:
            yield path
        except Exception as exc:  # the one-line error goes into the log too (the CLI prints it)
            log.print(f"error: {one_line(exc)}")
            raise
        finally:
            _log.remove(log)
            for logger in loggers:
                logger.removeHandler(handler)
