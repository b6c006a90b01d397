"""The `longcot` console script. It imports the CLI only when called: a worker process of the local
engine is spawned by re-running this module, and then loads only what its jobs need (the CLI and its
libraries were ~0.35 s of each worker's start-up)."""

from __future__ import annotations


def main() -> None:
    from stages.engine import limit_malloc_arenas

    limit_malloc_arenas()  # before polars, numpy and pyarrow start their threads
    from flows.cli import app

    app()
