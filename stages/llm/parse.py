"""Split a teacher's output into its reasoning and its final response, whatever the convention.

Three conventions are in use:
    DeepSeek API / vLLM reasoning parsers   `reasoning_content` is a separate field of the message
    R1-style models                          `<think> ... </think>` inside the content (the opening
                                             tag is often in the chat template, so may be missing)
    Sky-T1 / OpenThoughts                    `<|begin_of_thought|> ... <|end_of_thought|>` then
                                             `<|begin_of_solution|> ... <|end_of_solution|>`

A trace cut off by the length limit has no closing marker: all of it is reasoning and the response
is empty. Final answers are extracted later, by the verifier (stages/verify), from the response.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
THOUGHT_OPEN, THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"
SOLUTION_OPEN, SOLUTION_CLOSE = "<|begin_of_solution|>", "<|end_of_solution|>"


def split_reasoning(content: str | None, reasoning_content: str | None = None) -> tuple[str | None, str]:
    """(reasoning or None when the model did not think, response text)."""
    content = content or ""
    if reasoning_content:
        _, response = _split_markers(content)
        return reasoning_content.strip(), response
    return _split_markers(content)


def _split_markers(content: str) -> tuple[str | None, str]:
    if THOUGHT_OPEN in content or THOUGHT_CLOSE in content:
        reasoning, response = _split_on(content, THOUGHT_OPEN, THOUGHT_CLOSE)
        return reasoning, _solution(response)
    if THINK_CLOSE in content or content.lstrip().startswith(THINK_OPEN):
        return _split_on(content, THINK_OPEN, THINK_CLOSE)
    if SOLUTION_OPEN in content:
        return None, _solution(content)
    return None, content.strip()


def _split_on(content: str, open_tag: str, close_tag: str) -> tuple[str, str]:
    """Reasoning up to the first closing tag (all of it when truncated), response after it."""
    head, closed, tail = content.partition(close_tag)
    _, opened, thought = head.partition(open_tag)
    reasoning = thought if opened else head
    return reasoning.strip(), tail.strip() if closed else ""


def _solution(text: str) -> str:
    """The text inside the solution markers (up to the end when the closing one was cut off)."""
    _, opened, inside = text.partition(SOLUTION_OPEN)
    body = inside if opened else text
    return body.partition(SOLUTION_CLOSE)[0].strip()
