"""Answer extraction and the math rules: hard equivalences that must match, near misses that must not."""

from __future__ import annotations

import pytest

from stages.verify.extract import extract_code, final_answer, split_response
from stages.verify.mathcheck import check_math, choice_letter

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),  # fraction vs decimal
    ("0.75", "\\frac34"),
    ("\\dfrac{3}{4}", "\\tfrac{3}{4}"),
    ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2"),
    ("2\\sqrt{2}", "\\sqrt{8}"),  # surds
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("[1,3)", "[1, 3)"),  # intervals
    ("(-\\infty, 2] \\cup [3, \\infty)", "(-\\infty,2]\\cup[3,\\infty)"),
    ("\\{1,2,3\\}", "\\{3,1,2\\}"),  # sets ignore order
    ("(1,2)", "(1, 2)"),  # tuples / points
    ("1, 2", "2, 1"),  # a list of solutions is a set
    ("50\\%", "50"),  # percentages
    ("50\\%", "0.5"),
    ("30^\\circ", "30"),  # degrees
    ("90^{\\circ}", "90"),
    ("5\\text{ cm}", "5"),  # units
    ("12 \\text{ inches}", "12"),
    ("\\text{Evelyn}", "Evelyn"),  # \text{} answers
    ("\\text{(C)}", "C"),
    ("-0", "0"),  # negative zero
    ("10{,}000", "10000"),  # LaTeX thousands separator (a Qwen2.5-Math label error)
    ("123456789012345678901234567890", "123456789012345678901234567890"),  # huge integers
    ("x^2+2x+1", "(x+1)^2"),
    ("y = 2x + 1", "2x+1"),
    ("\\$18.90", "18.90"),
]

NOT_EQUIVALENT = [
    ("\\frac{1}{3}", "0.33"),  # a rounded decimal is not the fraction
    ("\\pi", "3.14"),
    ("(1,3)", "[1,3)"),  # open vs half-open interval
    ("(1,2)", "(2,1)"),  # tuples keep order
    ("\\sqrt{2}", "2"),
    ("123456789012345678901234567890", "123456789012345678901234567891"),  # huge, off by one
    ("\\text{Evelyn}", "Elvney"),  # a word is not a product of its letters
    ("\\text{odd}", "even"),
    ("2", "-2"),
    ("\\frac{1}{2}", "2"),
    ("x+1", "x-1"),
]


@pytest.mark.parametrize(("gold", "pred"), EQUIVALENT)
def test_equivalent_answers_match(gold: str, pred: str) -> None:
    verdict = check_math(gold, pred)
    assert verdict["correct"], verdict
    assert verdict["error"] is None


@pytest.mark.parametrize(("gold", "pred"), NOT_EQUIVALENT)
def test_different_answers_do_not_match(gold: str, pred: str) -> None:
    assert not check_math(gold, pred)["correct"]


@pytest.mark.parametrize(
    ("gold", "pred", "correct"),
    [
        ("C", "C", True),
        ("C", "(C)", True),
        ("C", "\\textbf{(C)} 12", True),
        ("C", "C. 12", True),
        ("C", "D", False),
        ("B", "12", False),
    ],
)
def test_multiple_choice_letters(gold: str, pred: str, correct: bool) -> None:
    verdict = check_math(gold, pred)
    assert verdict["method"] == "choice"
    assert verdict["correct"] is correct


@pytest.mark.parametrize(
    ("gold", "pred", "correct"),
    [("025", "25", True), ("25", "025", True), ("204", "204.0", True), ("73", "73.5", False)],
)
def test_integer_mode(gold: str, pred: str, correct: bool) -> None:
    verdict = check_math(gold, pred, mode="integer")
    assert verdict["method"] == "integer"
    assert verdict["correct"] is correct


def test_missing_answer_and_gold_are_verdicts() -> None:
    assert check_math("3", None) == {"correct": False, "method": "no_answer", "error": None}
    assert check_math(None, "3")["error"] == "no_gold"


def test_choice_letter_reads_decorated_options() -> None:
    assert [choice_letter(s) for s in ["(A)", "\\text{B}", "E) 7", "x", "12"]] == ["A", "B", "E", None, None]


def test_split_think_tags() -> None:
    s = split_response("<think>try 3... no, \\boxed{3} is wrong</think>The answer is \\boxed{4}.")
    assert (s.format, s.complete) == ("think_tags", True)
    assert final_answer(s.answer) == ("4", "boxed")  # the box inside abandoned thinking is ignored


def test_split_r1_without_opening_tag_and_unclosed_think() -> None:
    assert split_response("thinking</think>\\boxed{5}").reasoning == "thinking"
    cut = split_response("<think>still thinking \\boxed{2}")
    assert (cut.answer, cut.complete) == (None, False)


def test_split_openthoughts_markers() -> None:
    text = "<|begin_of_thought|>\nhmm \\boxed{1}\n<|end_of_thought|>\n<|begin_of_solution|>\nso \\boxed{2}\n<|end_of_solution|>"
    s = split_response(text)
    assert s.format == "thought_markers" and s.complete
    assert final_answer(s.answer)[0] == "2"
    truncated = split_response(text.split("<|begin_of_solution|>")[0])
    assert truncated.answer is None and not truncated.complete


def test_split_separate_reasoning_field() -> None:
    s = split_response("Final answer: 42", reasoning="let me think")
    assert (s.format, s.reasoning) == ("reasoning_field", "let me think")
    assert final_answer(s.answer) == ("42", "answer_line")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{\\frac{1}{\\sqrt{2}}} done", ("\\frac{1}{\\sqrt{2}}", "boxed")),
        ("The final answer is $\\frac{3}{4}$.", ("\\frac{3}{4}", "answer_line")),
        ("Answer: (B)", ("(B)", "answer_line")),
        ("the price is indeed $50.", ("50", "last_number")),
        ("no numbers here", (None, "none")),
    ],
)
def test_final_answer_markers(text: str, expected: tuple) -> None:
    assert final_answer(text) == expected


def test_extract_code_prefers_last_python_block() -> None:
    text = "```text\nnot code\n```\n```python\nprint(1)\n```\nthen\n```py\nprint(2)\n```"
    assert extract_code(text) == "print(2)\n"
    assert extract_code("no fences") is None
