"""The one LLM client: teacher generation, both LLM judges and the pass-rate student call models here.

One config (`LLMConfig`, spelt `llm:` in recipes), one cache, one error type (`LLMError`), the same
retries, limits, budget and cost accounting for every caller. Heavy dependencies (openai, vllm,
xllamacpp) are imported only when a backend needs them.
"""

from stages.llm.client import LLMClient, complete, prompt_hash
from stages.llm.config import LLMConfig, Prices
from stages.llm.types import Ask, LLMError, Messages, SampleRequest

__all__ = [
    "Ask",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "Messages",
    "Prices",
    "SampleRequest",
    "complete",
    "prompt_hash",
]
