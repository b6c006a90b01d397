"""One configuration for every model call: teacher samples, both LLM judges and the pass-rate student.

In a recipe it is always spelt `llm:` - `- stage: generate` with `llm: {...}`, `judge: {llm: {...}}`
in verify and decontaminate, `student: {llm: {...}}` in pass_rate. Secrets are never here: only the
NAMES of the environment variables that hold them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_CACHE_DIR = Path("runs/cache/llm")


class Prices(BaseModel):
    """US dollars per million tokens; the recipe states them, so reports show what a run cost."""

    model_config = ConfigDict(extra="forbid")

    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)
    batch_discount: float = Field(0.5, gt=0, le=1, description="Batch API price as a share of online")

    def cost(self, prompt_tokens: float, completion_tokens: float, batch: bool = False) -> float:
        online = (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6
        return online * (self.batch_discount if batch else 1.0)


class BatchOptions(BaseModel):
    """`mode: batch`: the OpenAI Batch API (half price, results within `completion_window`)."""

    model_config = ConfigDict(extra="forbid")

    max_requests: int = Field(50_000, ge=1, description="requests per batch (the API's limit: 50,000)")
    max_bytes: int = Field(190 * 2**20, ge=1024, description="bytes per input file (the API's limit: 200 MB)")
    completion_window: str = "24h"
    poll_s: float = Field(30.0, gt=0, description="seconds between status polls")
    max_rounds: int = Field(3, ge=1, description="batches per item: failed items go in a follow-up batch")


class LLMConfig(BaseModel):
    """Model, sampling, request shaping, limits, retries, prices, cache."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    backend: Literal["openai", "vllm", "local"] = "openai"
    mode: Literal["online", "batch"] = "online"  # batch: the Batch API (openai backend only)
    # the model name sent to the endpoint / loaded by vLLM; for `local`, a name from
    # stages.llm.teacher_models.MODELS or a path to a GGUF file
    model: str
    base_url: str | None = None  # a URL given literally (not a secret); else read from base_url_env
    base_url_env: str | None = "OPENAI_BASE_URL"
    api_key_env: str | None = "OPENAI_API_KEY"

    # sampling (part of the cache key, except n: raising n reuses the samples already made)
    n: int = Field(4, ge=1)
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(16384, ge=1)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    seed: int | None = None  # sample i of a problem is asked with seed + i, where the server honours it
    extra_body: dict[str, Any] = Field(default_factory=dict)  # provider extras, e.g. reasoning_effort

    # request shaping
    http_client: Literal["aiohttp", "openai"] = "aiohttp"  # openai = AsyncOpenAI (more client CPU)
    n_per_request: bool = False  # one request with n=k for the k missing samples, if the server supports n
    concurrency: int = Field(
        32, ge=1
    )  # the most requests in flight; 429s lower it (AIMD), successes raise it
    ramp_up_s: float = Field(0.1, ge=0)  # workers start spread over this time, not all at once
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    # per-request timeout; null = derived from max_tokens and the decoding speed measured so far
    timeout_s: float | None = Field(None, gt=0)
    tokens_per_s: float = Field(5.0, gt=0, description="assumed decoding speed until 8 requests are measured")
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    grace_s: float = Field(60.0, ge=0, description="on SIGINT/SIGTERM, wait this long for requests in flight")
    prices: Prices = Field(default_factory=Prices)
    budget_usd: float | None = Field(
        None, gt=0, description="stop sending before this run's spend exceeds it"
    )
    batch: BatchOptions = Field(default_factory=BatchOptions)

    cache_dir: Path = DEFAULT_CACHE_DIR  # the sample cache and batch ledger, shared by every caller
    progress: bool = True

    # backend `local`: the CPU teacher (llama.cpp server in-process, via xllamacpp)
    local_parallel: int = Field(2, ge=1)  # decoding slots; a request with n=k uses k of them
    local_ctx_per_slot: int = Field(2048, ge=256)
    local_threads: int | None = None

    # backend `vllm`: the offline engine on local GPUs
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = None
    vllm_batch_problems: int = Field(256, ge=1)  # prompts per engine call; samples persist after each
    vllm_engine_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _batch_needs_openai(self) -> LLMConfig:
        if self.mode == "batch" and self.backend != "openai":
            raise ValueError(f"mode: batch needs backend: openai (got backend: {self.backend})")
        return self

    def sampling_key(self) -> dict[str, Any]:
        """The sampling parameters that change what a sample is (n excluded on purpose)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "extra_body": self.extra_body,
        }

    def grouped(self) -> bool:
        """One request (or engine prompt) per problem for all its missing samples."""
        return self.n_per_request or self.backend == "vllm"
