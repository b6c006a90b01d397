"""Verification stage: answer extraction, math rules, sandboxed code tests, LLM judge, quality filters."""

from stages.verify.judge import JudgeConfig
from stages.verify.quality import QualityConfig
from stages.verify.stage import CodeConfig, VerifyConfig, run, verify_frame, verify_frames

__all__ = [
    "CodeConfig",
    "JudgeConfig",
    "QualityConfig",
    "VerifyConfig",
    "run",
    "verify_frame",
    "verify_frames",
]
