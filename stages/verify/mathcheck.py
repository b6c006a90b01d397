"""Math answer checking: math-verify (LaTeX and plain expressions, sympy underneath) plus the
special cases it gets wrong: word answers, multiple-choice letters and integer-only (AIME) answers.

`check_math` is a pure function of plain values that returns a plain dict, so it can run in a worker
process (math-verify's timeouts use `signal.alarm`, which only works in a process's main thread).
A timeout is reported, never swallowed: math-verify would silently turn it into "wrong".
"""

from __future__ import annotations

import re
from typing import Any, Literal

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from stages.answers import normalize_answer_value

Mode = Literal["auto", "choice", "integer"]

_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|mbox|operatorname)\s*\{([^{}]*)\}")
_LETTER = re.compile(r"^\(?([A-J])\)?(?:[.):]|\s|$)")
_WORD = re.compile(r"^[A-Za-z][A-Za-z '\-]*[A-Za-z]$")
_INTEGER = re.compile(r"^[+-]?\d+$")


def _strip_text(value: str) -> str:
    """`\\text{(C)}` -> `(C)`, `\\textbf{odd}` -> `odd`; also `$...$` around the whole answer."""
    value = value.strip().strip("$").strip()
    for _ in range(3):  # nested wrappers such as \textbf{\text{x}}
        value = _TEXT_WRAP.sub(r"\1", value)
    return value.strip()


def choice_letter(value: str | None) -> str | None:
    """The option letter of a multiple-choice answer: `C`, `(C)`, `\\textbf{(C)} 5`, `C. foo`."""
    if not value:
        return None
    match = _LETTER.match(_strip_text(value).replace("\\ ", " ").strip())
    return match.group(1) if match else None


def _as_integer(value: str) -> int | None:
    cleaned = normalize_answer_value(_strip_text(value), integer_answers=True)
    return int(cleaned) if cleaned is not None and _INTEGER.match(cleaned) else None


def _is_word(value: str) -> bool:
    """A natural-language answer ("Evelyn", "odd"): math-verify would read it as a product of symbols."""
    stripped = _strip_text(value)
    return bool(_WORD.match(stripped)) and (len(stripped) >= 3 or stripped != value.strip())


def _words(value: str) -> str:
    return " ".join(_strip_text(value).casefold().replace("-", " ").split())


def resolve_mode(gold: str, mode: Mode) -> Mode:
    """`auto` becomes `choice` when the gold answer is a single option letter."""
    if mode == "auto" and re.fullmatch(r"\(?[A-J]\)?", _strip_text(gold)):
        return "choice"
    return mode


def _math_verify(gold: str, pred: str, timeout_s: int) -> dict[str, Any]:
    """Both sides through math-verify; every (gold, pred) parse pair compared, timeouts reported."""
    try:
        gold_parsed = parse(f"${gold}$", _EXTRACTION, parsing_timeout=timeout_s, raise_on_error=True)
        pred_parsed = parse(f"${pred}$", _EXTRACTION, parsing_timeout=timeout_s, raise_on_error=True)
    except TimeoutException:
        return {"correct": False, "method": "math_verify", "error": "timeout"}
    except Exception as exc:  # a parser bug is a verdict about this item, not a crash of the batch
        return {"correct": False, "method": "math_verify", "error": f"parse_error: {exc!r}"[:300]}
    if not gold_parsed or not pred_parsed:
        side = "gold" if not gold_parsed else "prediction"
        return {"correct": False, "method": "unparsed", "error": None, "unparsed": side}
    timed_out = False
    for g in gold_parsed:
        for p in pred_parsed:
            try:
                if verify(g, p, timeout_seconds=timeout_s, raise_on_error=True):
                    return {"correct": True, "method": "math_verify", "error": None}
            except TimeoutException:
                timed_out = True
            except Exception:  # sympy can fail on one pairing and succeed on another
                continue
    return {"correct": False, "method": "math_verify", "error": "timeout" if timed_out else None}


def check_math(gold: str | None, pred: str | None, mode: Mode = "auto", timeout_s: int = 5) -> dict[str, Any]:
    """Is `pred` the same answer as `gold`? Returns {correct, method, error[, unparsed]}.

    `error` is set when the check itself failed (timeout, parser crash): the caller decides whether
    that is a drop or a question for the judge.
    """
    if gold is None or not str(gold).strip():
        return {"correct": False, "method": "no_gold", "error": "no_gold"}
    if pred is None or not pred.strip():
        return {"correct": False, "method": "no_answer", "error": None}
    mode = resolve_mode(gold, mode)
    if mode == "choice":
        letter = choice_letter(pred)
        return {"correct": letter == choice_letter(gold), "method": "choice", "error": None}
    if mode == "integer":
        gold_int, pred_int = _as_integer(gold), _as_integer(pred)
        if gold_int is not None:
            return {"correct": pred_int == gold_int, "method": "integer", "error": None}
    if normalize_answer_value(_strip_text(gold)) == normalize_answer_value(_strip_text(pred)):
        return {"correct": True, "method": "exact", "error": None}
    if _is_word(gold):
        return {"correct": _words(gold) == _words(pred), "method": "words", "error": None}
    return _math_verify(gold, pred, timeout_s)
