"""The vLLM backend with vLLM's objects faked (vLLM needs CUDA and cannot be installed here).

The fake records what the engine was asked (chat messages, one SamplingParams per prompt) and
answers like vLLM does: a RequestOutput per prompt with `prompt_token_ids` and `outputs`
(CompletionOutput: index, text, token_ids, finish_reason). The rows and cache are the stage's own.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import write_problems

from stages.generate import GenerateConfig
from stages.registry import run_stage


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]


@dataclass
class LLM:
    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    calls: list = field(default_factory=list)

    def __post_init__(self) -> None:
        ENGINES.append(self)

    def chat(self, messages, sampling_params, use_tqdm=True):
        self.calls.append((messages, sampling_params))
        results = []
        for conversation, params in zip(messages, sampling_params, strict=True):
            prompt = conversation[-1]["content"]
            outputs = [
                CompletionOutput(
                    index=i,
                    text=f"<think>thinking {i}</think>\\boxed{{{i}}}" if i % 2 == 0 else "<think>cut off",
                    token_ids=list(range(10 + i)),
                    finish_reason="stop" if i % 2 == 0 else "length",
                )
                for i in reversed(range(params.n))  # vLLM does not promise order; the backend sorts
            ]
            results.append(RequestOutput(prompt_token_ids=list(range(len(prompt) // 4)), outputs=outputs))
        return results


ENGINES: list[LLM] = []


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> list[LLM]:
    module = types.ModuleType("vllm")
    module.LLM = LLM  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    ENGINES.clear()
    return ENGINES


def generate(problems: Path, cfg: GenerateConfig, out: Path) -> tuple[dict, pl.DataFrame]:
    report = run_stage("generate", problems, cfg, out, force=True).model_dump(mode="json")
    return report, pl.read_parquet(out / "kept")


def test_vllm_requests_rows_and_cache(tmp_path: Path, fake_vllm: list[LLM]) -> None:
    problems = write_problems(tmp_path / "in", 5, domains=("math", "code"))
    cfg = GenerateConfig(
        llm=dict(
            backend="vllm",
            model="Qwen/QwQ-32B",
            n=3,
            seed=100,
            temperature=0.7,
            max_tokens=1024,
            tensor_parallel_size=4,
            max_model_len=8192,
            vllm_batch_problems=2,
            cache_dir=tmp_path / "cache",
            progress=False,
        )
    )
    report, kept = generate(problems, cfg, tmp_path / "out")
    (engine,) = fake_vllm
    assert (engine.model, engine.tensor_parallel_size, engine.max_model_len) == ("Qwen/QwQ-32B", 4, 8192)
    assert [len(messages) for messages, _ in engine.calls] == [2, 2, 1]  # batches of 2 problems
    messages, params = engine.calls[0]
    assert messages[0][0]["role"] == "user" and "Problem p0:" in messages[0][0]["content"]
    assert "```python" in messages[1][0]["content"]  # the code template for the code problem
    assert params[0] == SamplingParams(n=3, temperature=0.7, top_p=0.95, max_tokens=1024, seed=100)

    assert kept.height == 15 and report["rows_dropped"] == 0
    first = kept.filter(pl.col("uid") == "p000000").sort("sample")
    assert first["reasoning"].to_list() == ["thinking 0", "cut off", "thinking 2"]
    assert first["response"].to_list() == ["\\boxed{0}", "", "\\boxed{2}"]
    assert first["truncated"].to_list() == [False, True, False]
    assert first["completion_tokens"].to_list() == [10, 11, 12]  # exact per-choice counts
    assert report["details"]["tokens_out"] == 5 * (10 + 11 + 12)

    # the same cache serves a re-run: no engine is even built
    fake_vllm.clear()
    report, kept = generate(problems, cfg, tmp_path / "out2")
    assert fake_vllm == [] and report["details"]["cache_hits"] == 15 and kept.height == 15


def test_missing_vllm_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    problems = write_problems(tmp_path / "in", 1)
    cfg = GenerateConfig(llm=dict(backend="vllm", model="m", cache_dir=tmp_path / "cache", progress=False))
    with pytest.raises(ImportError, match=r"longcot\[gpu\]"):
        run_stage("generate", problems, cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is published"
