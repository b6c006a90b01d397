"""The one LLM client: teacher samples, LLM judges and the pass-rate student all call through here.

    with LLMClient(config) as client:
        failures = client.request(requests)          # SampleRequest(uid, messages, sample indexes)
        records = client.records(requests)           # {(uid, sample): cache record}

Every sample is keyed by (model, prompt hash, sampling parameters, sample index) in one SQLite
cache, so a sample asked for twice - by a re-run, a resumed run, a later round, or a judge asking
the same question - is paid once. A caller can ask in rounds (samples 0-1 of every problem, then
2-3 of the undecided ones): each round sends only what is missing. The backends (an
OpenAI-compatible endpoint online or through the Batch API, vLLM offline, the CPU teacher) share
the cache, retries, limits, budget and cost accounting.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any, TypeVar

from prompts.templates import text_hash
from stages.llm.cache import SampleCache, sample_key
from stages.llm.config import LLMConfig
from stages.llm.parse import split_reasoning
from stages.llm.progress import LiveProgress, Stats
from stages.llm.types import Job, LLMError, Messages, SampleRequest

CACHE_FILE = "samples.sqlite"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CHUNK = 512  # requests whose cache entries are looked up at once

T = TypeVar("T")


def prompt_hash(messages: Messages) -> str:
    return text_hash(json.dumps(messages, ensure_ascii=False, sort_keys=True))


class LLMClient:
    def __init__(self, config: LLMConfig, label: str = "llm"):
        self.config = config
        self.label = label
        self.cache = SampleCache(config.cache_dir / CACHE_FILE)
        self.stats = Stats()
        self._progress: LiveProgress | None = None

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- keys ----

    def keys(self, hashed: str, samples: Iterable[int]) -> tuple[str, ...]:
        """Cache keys of `samples` of the prompt whose hash is `hashed`."""
        sampling = self.config.sampling_key()
        return tuple(sample_key(self.config.model, hashed, sampling, i) for i in samples)

    # ---- requests ----

    def request(self, requests: Iterable[SampleRequest], expected: int = 0) -> dict[str, dict]:
        """Get every requested sample into the cache; returns {cache key: error detail} for those that
        failed for good or were not sent (budget). Raises LLMError when a signal stopped the run (what
        finished is cached: a re-run resumes). `expected` sizes the progress bar."""
        self.stats.samples_expected += expected
        with LiveProgress(self.stats, expected, self.config.progress, label=self.label) as progress:
            self._progress = progress
            failures = self._send(self._jobs(requests, progress), progress)
            self._progress = None
        self.stats.request_phase_s = self.stats.elapsed()
        if self.stats.stopped in {s.name for s in STOP_SIGNALS}:
            raise LLMError(
                f"{self.label}: stopped by {self.stats.stopped}; {self.stats.samples_generated} new samples "
                f"are cached, the requests in flight were waited for; run again to resume"
            )
        return failures

    def skipped(self, samples: int) -> None:
        """Samples the caller counts in `expected` but will not request (no prompt can be made)."""
        if self._progress is not None:
            self._progress.update(samples)

    def records(self, requests: Iterable[SampleRequest]) -> dict[tuple[str, int], dict[str, Any]]:
        """The cached record of every requested sample that has one, by (uid, sample)."""
        wanted = {}
        for r in requests:
            keys = r.keys or self.keys(r.prompt_hash or prompt_hash(r.messages), r.samples)
            for sample, key in zip(r.samples, keys, strict=True):
                wanted[key] = (r.uid, sample)
        return {wanted[key]: record for key, record in self.cache.get_many(wanted).items()}

    def sample(self, requests: list[SampleRequest]) -> tuple[dict[tuple[str, int], dict], dict[str, dict]]:
        """`request` then `records`: one round of sampling; (records by (uid, sample), failures by key)."""
        failures = self.request(requests, sum(len(r.samples) for r in requests))
        return self.records(requests), failures

    def complete(self, conversations: list[Messages]) -> list[str]:
        """One reply per conversation, its reasoning split off (what judges read); "" where the
        request failed for good. Asked once: a repeated question is a cache hit."""
        return [reply for reply, _ in self.replies(conversations)]

    def replies(self, conversations: list[Messages]) -> list[tuple[str, str | None]]:
        """(reply, error) per conversation: `complete`'s reply, and where the request failed for good
        why ("kind: message"), so a caller can say it instead of reading "" as an answer."""
        hashes = [prompt_hash(messages) for messages in conversations]  # once: sample() reuses them
        requests = [
            SampleRequest(str(i), messages, (0,), hashed, self.keys(hashed, (0,)))
            for i, (messages, hashed) in enumerate(zip(conversations, hashes, strict=True))
        ]
        records, failures = self.sample(requests)
        out: list[tuple[str, str | None]] = []
        for r in requests:
            record = records.get((r.uid, 0)) or {}
            reply = split_reasoning(record.get("content"), record.get("reasoning_content"))[1] or ""
            failure = failures.get(r.keys[0])
            out.append((reply, f"{failure['kind']}: {failure['message']}" if failure else None))
        return out

    def _jobs(self, requests: Iterable[SampleRequest], progress: LiveProgress) -> Iterator[Job]:
        """Jobs for the samples missing from the cache: one per sample, or one per prompt with n."""
        iterator = iter(requests)
        max_tokens = self.config.max_tokens
        while chunk := list(islice(iterator, _CHUNK)):
            hashes = [r.prompt_hash or prompt_hash(r.messages) for r in chunk]
            keys = [r.keys or self.keys(h, r.samples) for h, r in zip(hashes, chunk, strict=True)]
            cached = self.cache.get_many(k for ks in keys for k in ks)
            self.stats.cache_hits += len(cached)
            progress.update(len(cached))
            for r, hashed, ks in zip(chunk, hashes, keys, strict=True):
                missing = [(i, k) for i, k in zip(r.samples, ks, strict=True) if k not in cached]
                if not missing:
                    continue
                groups = [missing] if self.config.grouped() else [[m] for m in missing]
                est_prompt = sum(len(m.get("content") or "") for m in r.messages) // 3
                for group in groups:
                    yield Job(
                        uid=r.uid,
                        prompt_hash=hashed,
                        messages=r.messages,
                        samples=tuple(i for i, _ in group),
                        keys=tuple(k for _, k in group),
                        est_tokens=est_prompt + max_tokens * len(group),
                    )

    def _send(self, jobs: Iterator[Job], progress: LiveProgress) -> dict[str, dict]:
        config = self.config
        if config.backend == "vllm":
            from stages.llm.backends.vllm_backend import run_offline

            return run_offline(jobs, config, self.cache, self.stats, progress)
        if config.backend == "local":  # more requests than decoding slots would only queue up and time out
            config = config.model_copy(update={"concurrency": min(config.concurrency, config.local_parallel)})
        with _endpoint(config) as (base_url, api_key):
            if config.mode == "batch":
                from stages.llm.batch import BatchRun

                return BatchRun(config, self.cache, self.stats, progress, base_url, api_key).run(jobs)
            return _run_async(self._online(jobs, config, progress, base_url, api_key))

    async def _online(
        self, jobs: Iterator[Job], config: LLMConfig, progress: LiveProgress, base_url: str, api_key: str
    ) -> dict[str, dict]:
        from stages.llm.backends.openai_backend import make_backend
        from stages.llm.runner import Runner

        backend = make_backend(config, base_url, api_key)
        runner = Runner(backend, self.cache, config, self.stats, progress, secrets=[api_key])
        try:
            with _stop_on_signals(runner.stop):
                return await runner.run(jobs)
        finally:
            await backend.aclose()


def complete(conversations: list[Messages], config: LLMConfig, label: str = "judge") -> list[str]:
    """`LLMClient(config).complete(conversations)`: the callable both LLM judges use."""
    with LLMClient(config, label) as client:
        return client.complete(conversations)


@contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """SIGINT/SIGTERM call `stop(name)` while requests run (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)


@contextmanager
def _endpoint(config: LLMConfig) -> Iterator[tuple[str, str]]:
    """(base URL, API key): from the config and environment, or a CPU teacher started for this run."""
    if config.backend == "local":
        from stages.llm.teacher_server import cpu_teacher

        with cpu_teacher(
            config.model, config.local_parallel, config.local_ctx_per_slot, config.local_threads
        ) as url:
            yield url, "no-key"
        return
    from stages.llm.backends.openai_backend import read_credentials

    yield read_credentials(config)


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from a thread that already runs an event loop (a notebook): then in a new thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _asyncio_run(coro)
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_asyncio_run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _asyncio_run(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is installed (the `teacher` extra): about a third less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
