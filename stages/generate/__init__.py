"""Teacher generation: `llm.n` samples per problem through the LLM client (stages.llm)."""

from stages.generate.config import GenerateConfig
from stages.generate.stage import Generate, GenerateDetails

__all__ = ["Generate", "GenerateConfig", "GenerateDetails"]
