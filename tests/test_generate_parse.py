"""Reasoning / response separation on real long-CoT traces (Sky-T1 fixtures), in all three conventions.

The fixtures use the `<|begin_of_thought|>` markers; the same traces are re-encoded as R1-style
`<think>` content and as DeepSeek's separate `reasoning_content`, and every convention must give
the same split. Many traces were cut off by the length limit (no end marker): all reasoning, no response.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.llm.parse import (
    SOLUTION_CLOSE,
    SOLUTION_OPEN,
    THOUGHT_CLOSE,
    THOUGHT_OPEN,
    split_reasoning,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "generations"
FILES = ("skyt1_math_14b_aime24_longcot.jsonl", "skyt1_math_14b_amc23_longcot.jsonl")


def load_traces() -> list[str]:
    traces = []
    for name in FILES:
        path = FIXTURES / name
        if not path.is_file():
            pytest.skip(f"fixture {path} not present")
        with path.open(encoding="utf-8") as f:
            for line in f:
                traces.extend(json.loads(line)["code"])
    return traces


@pytest.fixture(scope="module")
def traces() -> list[str]:
    return load_traces()


def expected(trace: str) -> tuple[str, str]:
    """The split, computed independently of the parser with plain index arithmetic."""
    start = trace.index(THOUGHT_OPEN) + len(THOUGHT_OPEN)
    end = trace.find(THOUGHT_CLOSE)
    if end < 0:
        return trace[start:].strip(), ""
    rest = trace[end + len(THOUGHT_CLOSE) :]
    if SOLUTION_OPEN in rest:
        rest = rest[rest.index(SOLUTION_OPEN) + len(SOLUTION_OPEN) :]
    if SOLUTION_CLOSE in rest:
        rest = rest[: rest.index(SOLUTION_CLOSE)]
    return trace[start:end].strip(), rest.strip()


def as_think(trace: str) -> str:
    """The same trace as an R1-style model writes it."""
    reasoning, response = expected(trace)
    return (
        f"<think>\n{reasoning}\n</think>\n\n{response}" if THOUGHT_CLOSE in trace else f"<think>\n{reasoning}"
    )


def test_fixture_mix(traces: list[str]) -> None:
    """The fixtures hold both finished and truncated traces (README: 8/30 and 24/40 finished)."""
    finished = sum(THOUGHT_CLOSE in t for t in traces)
    assert len(traces) == 70 and finished == 32


def test_thought_markers(traces: list[str]) -> None:
    for trace in traces:
        reasoning, response = split_reasoning(trace)
        assert (reasoning, response) == expected(trace)
        assert THOUGHT_OPEN not in reasoning and THOUGHT_CLOSE not in reasoning
        assert SOLUTION_OPEN not in response and SOLUTION_CLOSE not in response
        if THOUGHT_CLOSE in trace:
            assert "\\boxed" in response or response, "a finished trace has a response"
        else:
            assert response == "" and len(reasoning) > 1000


def test_think_tags(traces: list[str]) -> None:
    for trace in traces:
        assert split_reasoning(as_think(trace)) == expected(trace)


def test_think_tags_without_opening_tag(traces: list[str]) -> None:
    """R1's chat template puts `<think>` in the prompt, so the content starts mid-thought."""
    for trace in traces:
        if THOUGHT_CLOSE in trace:
            content = as_think(trace).removeprefix("<think>\n")
            assert split_reasoning(content) == expected(trace)


def test_reasoning_content_field(traces: list[str]) -> None:
    for trace in traces:
        reasoning, response = expected(trace)
        assert split_reasoning(response, reasoning_content=reasoning) == (reasoning, response)


def test_finished_responses_hold_the_boxed_answer(traces: list[str]) -> None:
    finished = [split_reasoning(t)[1] for t in traces if THOUGHT_CLOSE in t]
    assert sum("\\boxed" in r for r in finished) >= len(finished) - 2


@pytest.mark.parametrize(
    ("content", "reasoning_content", "want"),
    [
        ("Just an answer: \\boxed{3}", None, (None, "Just an answer: \\boxed{3}")),
        (None, None, (None, "")),
        ("<think>abc</think>\nfinal", None, ("abc", "final")),
        ("<think>cut off mid-thought", None, ("cut off mid-thought", "")),
        ("<think>a</think> b </think> c", None, ("a", "b </think> c")),  # first closing tag ends the thought
        ("final \\boxed{1}", "thinking...", ("thinking...", "final \\boxed{1}")),
        ("<|begin_of_solution|>only a solution<|end_of_solution|>", None, (None, "only a solution")),
        ("<|begin_of_thought|>t<|end_of_thought|><|begin_of_solution|>cut", None, ("t", "cut")),
    ],
)
def test_edge_cases(content: str | None, reasoning_content: str | None, want: tuple) -> None:
    assert split_reasoning(content, reasoning_content) == want
