"""Prefect's ephemeral API server, started so that a Ctrl-C stops the run and not the server."""

from __future__ import annotations

import signal


def start_ephemeral_api() -> None:
    """Start Prefect's ephemeral API server now (unless PREFECT_API_URL names one) with SIGINT
    blocked; the server process inherits the block.

    A Ctrl-C at the terminal goes to the whole foreground process group. Before this, it killed the
    server mid-run: the stage stopped cleanly ("stopped by SIGINT; run again to resume"), then the
    flow spent ~60 s retrying its state reports against the dead server and ended with "Connection
    refused". Prefect keeps one server per process, so the flow reuses this one, and stops it with
    SIGTERM at exit as before."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        SubprocessASGIServer().start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
