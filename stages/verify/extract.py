"""Split a generation into thinking and final answer, and pull the final answer (or program) out.

Teachers mark the end of thinking in different ways: DeepSeek returns a separate
`reasoning_content`, R1-style models write `<think>...</think>` then the answer, and OpenThoughts /
Sky-T1 wrap both parts in `<|begin_of_thought|>` ... `<|end_of_solution|>`. Reading the answer only
from the answer section matters: a box inside abandoned thinking is not the model's final answer.
Box parsing itself is `stages.answers.last_boxed`, shared with gold-answer collection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stages.answers import last_boxed

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
BEGIN_THOUGHT, END_THOUGHT = "<|begin_of_thought|>", "<|end_of_thought|>"
BEGIN_SOLUTION, END_SOLUTION = "<|begin_of_solution|>", "<|end_of_solution|>"

_ANSWER_LINE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:)?\s*[:=]?\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_MATH_WRAP = re.compile(r"^(?:\$+|\\\(|\\\[)\s*(.*?)\s*(?:\$+|\\\)|\\\])$", re.DOTALL)


@dataclass(frozen=True)
class Split:
    """A generation cut into its thinking and its final-answer section."""

    reasoning: str | None  # the thinking, None when the format has no separate thinking
    answer: str | None  # the final-answer section, None when the model never reached it
    format: str  # reasoning_field | think_tags | thought_markers | plain
    complete: bool  # the format's end marker was seen (False: cut off inside thinking or solution)


def split_response(response: str | None, reasoning: str | None = None) -> Split:
    """Cut `response` (and a separate `reasoning`, DeepSeek style) into thinking and answer."""
    text = response or ""
    if reasoning and reasoning.strip():
        return Split(reasoning, text, "reasoning_field", True)
    if THINK_CLOSE in text:
        # R1 chat templates put `<think>` in the prompt, so a lone `</think>` is normal.
        head, _, tail = text.partition(THINK_CLOSE)
        return Split(head.replace(THINK_OPEN, "", 1), tail, "think_tags", True)
    if THINK_OPEN in text:
        return Split(text.split(THINK_OPEN, 1)[1], None, "think_tags", False)
    if BEGIN_THOUGHT in text or BEGIN_SOLUTION in text:
        thought = text.split(BEGIN_THOUGHT, 1)[-1].split(END_THOUGHT, 1)[0].split(BEGIN_SOLUTION, 1)[0]
        if BEGIN_SOLUTION not in text:
            return Split(thought, None, "thought_markers", False)
        solution = text.split(BEGIN_SOLUTION, 1)[1]
        return Split(thought, solution.split(END_SOLUTION, 1)[0], "thought_markers", END_SOLUTION in solution)
    return Split(None, text, "plain", True)


def _unwrap(answer: str) -> str:
    """`$x$`, `\\(x\\)`, `**x**`, `x.` -> `x`: decoration around an answer line."""
    answer = answer.strip().strip("*").strip()
    answer = answer.rstrip(".").strip()
    match = _MATH_WRAP.match(answer)
    return match.group(1).strip() if match else answer


def final_answer(answer_text: str | None) -> tuple[str | None, str]:
    """The final answer in an answer section and how it was found: boxed, answer_line, last_number."""
    if not answer_text:
        return None, "none"
    boxed = last_boxed(answer_text)
    if boxed:
        return boxed, "boxed"
    lines = _ANSWER_LINE.findall(answer_text)
    if lines and _unwrap(lines[-1]):
        return _unwrap(lines[-1]), "answer_line"
    numbers = _NUMBER.findall(answer_text)
    if numbers:
        return numbers[-1].replace(",", ""), "last_number"
    return None, "none"


def extract_code(text: str | None) -> str | None:
    """The last fenced code block (a python one if any is marked python), else None."""
    if not text:
        return None
    blocks = _CODE_BLOCK.findall(text)
    if not blocks:
        return None
    python = [body for lang, body in blocks if lang.lower() in ("python", "python3", "py")]
    return (python or [body for _, body in blocks])[-1]
