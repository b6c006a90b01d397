import pytest

from stages.answers import extract_answer, gsm8k_final, last_boxed, normalize_answer_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{42}$.", "42"),
        (r"\boxed{\frac{1}{2}} then \boxed{\dfrac{3}{\sqrt{4}}}", r"\dfrac{3}{\sqrt{4}}"),
        (r"nested \boxed{\{1, 2\}} set", r"\{1, 2\}"),
        (r"the answer is \boxed 5.", "5"),
        (r"\boxed 2.5", "2.5"),
        (r"$\boxed 7$", "7"),
        (r"\fbox{x+1}", "x+1"),
        (r"\boxed {  12 }", "12"),
        (r"complete \boxed{3} then truncated \boxed{4", "3"),
        ("no box here", None),
        (None, None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_gsm8k_marker_wins_over_boxes():
    solution = "She sells 9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
    assert gsm8k_final(solution) == "18"
    assert extract_answer(solution) == "18"
    assert extract_answer(r"thus \boxed{20}") == "20"


@pytest.mark.parametrize(
    ("raw", "integer", "expected"),
    [
        ("27.0", False, "27"),
        ("-3.000", False, "-3"),
        ("2.50", False, "2.50"),
        ("1,000", False, "1000"),
        ("1,234,567.5", False, "1234567.5"),
        ("1,2", False, "1,2"),  # a pair, not a thousands separator
        ("(1,000, 2)", False, "(1,000, 2)"),
        ("025", True, "25"),
        ("025", False, "025"),
        ("0", True, "0"),
        ("-007", True, "-7"),
        ("$5$", False, "5"),
        ("  ", False, None),
        (r"\frac{1}{2}", True, r"\frac{1}{2}"),
    ],
)
def test_normalize_answer(raw, integer, expected):
    assert normalize_answer_value(raw, integer) == expected
