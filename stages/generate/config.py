"""The generation stage's configuration (the `generate` step of a recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Prices(BaseModel):
    """US dollars per million tokens; the recipe states them, so reports show what a run cost."""

    model_config = ConfigDict(extra="forbid")

    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


class GenerateConfig(BaseModel):
    """Teacher, sampling, limits, retries, cache. Secrets are never here: only the NAMES of env vars."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    backend: Literal["openai", "vllm", "local"] = "openai"
    # the model name sent to the endpoint / loaded by vLLM; for `local`, a name from
    # stages.generate.teacher_models.MODELS or a path to a GGUF file
    model: str
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
    concurrency: int = Field(32, ge=1)
    ramp_up_s: float = Field(0.1, ge=0)  # workers start spread over this time, not all at once
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    timeout_s: float = Field(600.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    prices: Prices = Field(default_factory=Prices)

    # inputs and outputs
    cache_dir: Path = Path("runs/cache/generate")
    limit: int | None = Field(None, ge=0)  # at most this many problems (the first ones read)
    templates: dict[str, str] = Field(
        default_factory=lambda: {"code": "teacher_code", "default": "teacher_math"}
    )
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

    def template_for(self, domain: str | None) -> str | None:
        return self.templates.get(domain or "", self.templates.get("default"))

    def sampling_key(self) -> dict[str, Any]:
        """The sampling parameters that change what a sample is (n excluded on purpose)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "extra_body": self.extra_body,
        }
