"""What every `longcot` command shares: the console, --debug, and one-line errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from flows.console import one_line, say

state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> typer.Exit:
    """Print `error: message` and return the Exit to raise (code 1)."""
    # escaped: a message's own brackets (`.[ray]`, a list) are text, not rich markup
    say(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def guarded(fn: F) -> F:
    """Any exception becomes one clear line and exit code 1; `longcot --debug` re-raises it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as exc:
            if state["debug"]:
                raise
            raise fail(one_line(exc)) from None

    return wrapper  # type: ignore[return-value]
