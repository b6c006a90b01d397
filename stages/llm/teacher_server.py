"""The CPU teacher: llama.cpp's OpenAI-compatible server, in-process through xllamacpp.

Why xllamacpp and not llama-cpp-python: xllamacpp ships prebuilt CPU wheels (installs in seconds,
llama-cpp-python compiles for minutes), and it runs llama.cpp's own server, which honours `n` > 1
and decodes several requests at once in parallel slots; llama-cpp-python's server ignores `n`.
The stage then talks to it with the ordinary openai backend, so the quickstart exercises the same
code path as a hosted teacher.
"""

from __future__ import annotations

import gc
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stages.llm.teacher_models import DEFAULT_CACHE, resolve_model

# llama.cpp keeps finished slots' states in RAM for prompt reuse, up to 8 GiB by default: the process
# grew ~3 MB a request (1,019 -> 1,606 MB over 192 requests of ~350 tokens; a skywork_or1 run 1.4 ->
# 3.9 GB in 40 minutes). Capped at 256 MiB the same 192 stopped at 1,347 MB. Our prompts are one-shot;
# the reuse worth having is among one problem's concurrent samples, which 1 GiB holds many times over.
PROMPT_CACHE_MIB = 1024


class TeacherServerError(RuntimeError):
    pass


@contextmanager
def cpu_teacher(
    model: str = "qwen2.5-coder-0.5b",
    parallel: int = 2,
    ctx_per_slot: int = 2048,
    threads: int | None = None,  # default: the cores idle at start (see default_threads)
    cache_dir: Path = DEFAULT_CACHE,
    verbose: bool = False,
    ready_timeout_s: float = 120.0,
) -> Iterator[str]:
    """Serve `model` (a MODELS name or a GGUF path) on 127.0.0.1, a free port; yield the base URL (…/v1)."""
    try:
        import xllamacpp
    except ImportError as exc:
        raise ImportError("the CPU teacher needs xllamacpp: pip install 'longcot[cpu-teacher]'") from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(resolve_model(model, cache_dir))
    params.n_parallel = parallel
    params.n_ctx = parallel * ctx_per_slot
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.cpuparams.n_threads = threads or default_threads()
    params.cpuparams_batch.n_threads = params.cpuparams.n_threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.warmup = False
    params.verbosity = 3 if verbose else 0
    params.endpoint_metrics = False
    server = xllamacpp.Server(params)
    try:
        base = server.listening_address.rstrip("/")
        _wait_ready(base, ready_timeout_s)
        yield base + "/v1"
    finally:
        del server
        gc.collect()


def default_threads(sample_s: float = 0.5) -> int:
    """The cores idle now (CPU use sampled for `sample_s`), at least one. llama.cpp's threads meet at
    a barrier every token, so a thread that shares its core stalls them all: on 2 cores busy with
    other jobs, 2 threads measured 10x slower than 1 (2.5 vs 26 tokens/s); on 2 idle cores, 1.8x
    faster (59.6 vs 33.0 tokens/s, 4 slots)."""
    import psutil

    from stages.engine import default_workers

    cores = default_workers()
    idle = cores * (1 - psutil.cpu_percent(interval=sample_s) / 100)
    return max(1, min(cores, round(idle)))


def _wait_ready(base: str, timeout_s: float) -> None:
    """Poll /health until the model is loaded (the constructor usually returns after that already)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as response:
                if json.loads(response.read()).get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TeacherServerError(f"CPU teacher at {base} not ready after {timeout_s}s ({last})")
