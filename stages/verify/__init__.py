"""Verification stage: answer extraction, math rules, sandboxed code tests, LLM judge, quality filters."""

from stages.verify.judge import JudgeConfig
from stages.verify.quality import QualityConfig
from stages.verify.stage import CodeConfig, Verify, VerifyConfig, VerifyDetails, verify_frame, verify_rows

__all__ = [
    "CodeConfig",
    "JudgeConfig",
    "QualityConfig",
    "Verify",
    "VerifyConfig",
    "VerifyDetails",
    "verify_frame",
    "verify_rows",
]
