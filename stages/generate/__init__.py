"""Teacher generation: `llm.n` samples per problem through the LLM client (stages.llm)."""

from stages.generate.config import GenerateConfig
from stages.generate.stage import run

__all__ = ["GenerateConfig", "run"]
