"""vLLM's offline engine on local GPUs: the same jobs, cache and rows as the HTTP backends.

`LLM.chat` applies the model's own chat template; each prompt gets its own `SamplingParams(n=k)`
for its k missing samples. Prompts go to the engine in batches of `vllm_batch_problems` (vLLM
schedules within a batch), and a batch's samples are committed before the next starts, so a
killed run loses at most one batch. An engine error stops the run (the cache keeps what was done).
vLLM is imported lazily: it is the `gpu` extra, and cannot be installed on a CPU-only machine.
To use a `vllm serve` endpoint instead, point the openai backend at it (docs/generation.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from stages.llm.cache import SampleCache
from stages.llm.config import LLMConfig
from stages.llm.progress import LiveProgress, Stats
from stages.llm.runner import Runner
from stages.llm.types import Choice, Completion, Job


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            "the vllm backend needs the `gpu` extra on a CUDA machine: pip install 'longcot[gpu]'"
        ) from exc
    return vllm


class VLLMBackend:
    def __init__(self, config: LLMConfig):
        self.vllm = import_vllm()
        self.config = config
        args: dict[str, Any] = {
            "model": config.model,
            "tensor_parallel_size": config.tensor_parallel_size,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            **({"max_model_len": config.max_model_len} if config.max_model_len else {}),
            **config.vllm_engine_args,
        }
        self.llm = self.vllm.LLM(**args)

    def sampling_params(self, n: int, seed: int | None) -> Any:
        c = self.config
        return self.vllm.SamplingParams(
            n=n, temperature=c.temperature, top_p=c.top_p, max_tokens=c.max_tokens, seed=seed
        )

    def generate(self, jobs: list[Job]) -> list[Completion]:
        """One engine call for a batch of jobs; completions in job order."""
        seed = self.config.seed
        params = [
            self.sampling_params(len(j.samples), None if seed is None else seed + j.samples[0]) for j in jobs
        ]
        started = time.perf_counter()
        outputs = self.llm.chat([j.messages for j in jobs], sampling_params=params, use_tqdm=False)
        per_job = (time.perf_counter() - started) / max(1, len(jobs))
        return [to_completion(output, per_job) for output in outputs]


def to_completion(output: Any, latency_s: float) -> Completion:
    """A vLLM RequestOutput -> Completion, with exact token counts per choice."""
    choices = [
        Choice(o.text, None, o.finish_reason, completion_tokens=len(o.token_ids))
        for o in sorted(output.outputs, key=lambda o: o.index)
    ]
    return Completion(
        choices=choices,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=sum(c.completion_tokens or 0 for c in choices),
        latency_s=latency_s,
        model=None,
    )


def run_offline(
    jobs: Iterator[Job],
    config: LLMConfig,
    cache: SampleCache,
    stats: Stats,
    progress: LiveProgress,
    backend: VLLMBackend | None = None,
) -> dict[str, dict[str, Any]]:
    """Generate every job in engine-sized batches, committing each batch; nothing fails per request."""
    engine: VLLMBackend | None = backend
    runner: Runner | None = None
    for batch in _batches(jobs, config.vllm_batch_problems):
        if engine is None:  # the engine takes minutes to load: only when something is missing
            engine = VLLMBackend(config)
        runner = runner or Runner(engine, cache, config, stats, progress)  # type: ignore[arg-type]
        stats.attempts += 1
        for job, completion in zip(batch, engine.generate(batch), strict=True):
            runner.commit(job, completion)
    return {}


def _batches(jobs: Iterable[Job], size: int) -> Iterator[list[Job]]:
    iterator = iter(jobs)
    while batch := list(islice(iterator, size)):
        yield batch
