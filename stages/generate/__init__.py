"""Teacher generation: n samples per problem from an OpenAI-compatible endpoint, vLLM, or a CPU teacher.

Heavy dependencies (openai, vllm, xllamacpp) are imported only when a backend needs them.
"""

from stages.generate.config import GenerateConfig, Prices
from stages.generate.stage import complete, run

__all__ = ["GenerateConfig", "Prices", "complete", "run"]
