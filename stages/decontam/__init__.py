"""Benchmark decontamination: a registry of evaluation sets, n-gram / embedding / LLM-judge detection,
and the stage that drops contaminated rows with evidence (docs/decontamination.md)."""

from stages.decontam.config import DecontamConfig, EmbeddingConfig, JudgeConfig, NgramConfig
from stages.decontam.report import markdown_summary, render_section, stage_html
from stages.decontam.stage import DecontamDetails, Decontaminate, decontaminate

__all__ = [
    "DecontamConfig",
    "DecontamDetails",
    "Decontaminate",
    "EmbeddingConfig",
    "JudgeConfig",
    "NgramConfig",
    "decontaminate",
    "markdown_summary",
    "render_section",
    "stage_html",
]
