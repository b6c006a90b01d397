"""The generation stage's configuration: `- stage: generate` with `llm: {...}` in a recipe."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stages.llm.config import LLMConfig


class GenerateConfig(BaseModel):
    """The teacher (`llm`: model, sampling, limits, cache; `llm.n` samples per problem), which
    problems, and which prompt template per domain."""

    model_config = ConfigDict(extra="forbid")

    llm: LLMConfig
    limit: int | None = Field(None, ge=0)  # at most this many problems (the first ones read)
    templates: dict[str, str] = Field(
        default_factory=lambda: {"code": "teacher_code", "default": "teacher_math"}
    )

    def template_for(self, domain: str | None) -> str | None:
        return self.templates.get(domain or "", self.templates.get("default"))
