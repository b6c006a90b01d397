"""Text views for matching: normalised words (for n-grams) and code statements (I/O text stripped).

Words build on the canonical form of `stages.text` (NFKC, lower case; `folded` here) and add what makes two copies
of a benchmark problem differ without changing the problem: math delimiters, formatting-only LaTeX
commands (`\\dfrac` vs `\\frac`, `\\left(`), `\\frac12` vs `\\frac{1}{2}`, thousands separators
(`1,000`, `1{,}000`), `27.0` vs `27`, whether `2x` is written `2 x`, and how a power of ten is written
(`10^9`, `10^{9}`, `10**9`, `1e9`, `10⁹` are one word `10^9`). Numbers are never changed otherwise: a
problem with other numbers is another problem (`numbers_expr` is what the number check compares, where
a power of ten that lost its caret, `109` for `10^9` as scraped LeetCode constraints have it, counts as
that power). Everything is a polars expression, so a million rows tokenise in seconds.
"""

from __future__ import annotations

import re
import unicodedata

import polars as pl

# LaTeX commands that only format: dropping them makes `\dfrac{1}{2}`, `\frac12` and `1/2` closer,
# and `\left( x \right)` equal to `(x)`.
_FORMAT_COMMANDS = (
    r"\\(?:[dt]?frac|left|right|big+l?r?|displaystyle|textstyle|text(?:bf|it|rm)?|math(?:rm|bf|it|cal|bb)"
    r"|operatorname|boxed|mbox|hbox|limits|nolimits|cdot|times|[,;:! ]|q?quad|l?dots|cdots)"
)
# `\le`, `\leq` -> le (likewise ge, ne). Patterns use ASCII classes (`[0-9]`, `(?-u:\b)`): the
# Unicode ones cost several times more per pass over a million texts, and NFKC already made digits ASCII.
_SYNONYMS = r"\\([lgn]e)q?(?-u:\b)"
# Powers of ten, however written, become one word `10^k` (after NFKC has turned `10⁹` into `10^9`):
# `10^{9}`, `10**9`, `1e9`, `1e+9`; a mantissa stays its own number (`2e5` -> `2 10^5`, as `2 \times 10^5`).
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_B = r"(?-u:\b)"
_POWERS = (
    (rf"{_B}10\s*(?:\^|\*\*)\s*(?:\{{\s*([0-9]{{1,3}})\s*\}}|([0-9]{{1,3}}){_B})", "10^$1$2"),
    (rf"{_B}1e\+?([0-9]{{1,3}}){_B}", "10^$1"),
    (rf"{_B}([0-9]+(?:\.[0-9]+)?)e\+?([0-9]{{1,3}}){_B}", "$1 10^$2"),
)
_SUPERSCRIPT_CHARS = frozenset(_SUPERSCRIPTS)
_SUPERSCRIPT_RUN = re.compile(rf"([0-9])([{_SUPERSCRIPTS}]+)")
# A word: a power of ten, a run of letters, or a number (thousands separators removed first).
NUMBER_PATTERN = r"10\^[0-9]+|[0-9]+(?:\.[0-9]+)?"
WORD_PATTERN = rf"{NUMBER_PATTERN}|[a-z]+"
# `10k` is read as `10^k` by the number check (k = 2..18): scraped constraints lose the caret
# ("1 <= nums[i] <= 109"), so `109` on one side and `10^9` on the other are the same number.
LOST_CARET = r"^10([2-9]|1[0-8])$"
# Number words count as numbers ("three children" vs "two children"); "one" and "zero" do not, as
# "one" is mostly a pronoun ("one of the roots").
_NUMBER_NAMES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
)
NUMBER_WORDS = {w: str(i) for i, w in enumerate(_NUMBER_NAMES.split(" ")) if i >= 2}

# Code problems: wrappers added by evaluation harnesses, and the markers where the statement ends and
# input/output format, examples or constraints begin.
_CODE_WRAPPERS = (
    r"(?si)^you will be given a question \(problem specification\).*?question:\s*",
    r"(?si)^please solve the programming task below.*?code block\.\s*",
    r"(?i)^you are an expert python programmer, and here is your task:\s*",
)
_CODE_SECTION = (
    r"(?im)^\s*(?:-{3,}\s*)?(?:input(?: format)?|output(?: format)?|sample input(?: \d+)?|examples?(?: \d+)?"
    r"|constraints|note|for example|please complete the following python code.*|your code should pass.*"
    r"|read the inputs from stdin.*|you will use the following starter code.*)\s*:?\s*(?:-{3,})?\s*$"
    r"|>>>"
)
MIN_STATEMENT_CHARS = 40


def folded(texts: pl.Series) -> pl.Series:
    """Lower case, and for the few texts that are not ASCII also NFKC (after giving a superscript
    exponent a caret, so that `10⁹` becomes `10^9` and not `109`). The Python pass runs on those texts
    only: on ASCII text NFKC changes nothing, and a per-row loop over a million rows costs seconds."""
    odd = (texts.str.len_bytes() != texts.str.len_chars()).fill_null(False)
    if not odd.any():
        return texts.str.to_lowercase()
    at = odd.arg_true()
    fixed = [_nfkc(t) for t in texts.gather(at).to_list()]
    return texts.scatter(at, pl.Series(fixed, dtype=pl.String)).str.to_lowercase()


def _nfkc(text: str | None) -> str | None:
    if text is None:
        return None
    if not _SUPERSCRIPT_CHARS.isdisjoint(text):
        text = _SUPERSCRIPT_RUN.sub(r"\1^\2", text)
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def normalised_expr(text: pl.Expr) -> pl.Expr:
    """Folded text (`folded`) with formatting-only differences removed (the source of words and numbers)."""
    canon = text.map_batches(folded, return_dtype=pl.String, is_elementwise=True)
    # list markers at line starts ("(1) ...", "2. ...") are layout, not numbers of the problem
    canon = canon.str.replace_all(r"(?m)^[ \t]*(?:\([0-9]{1,2}\)|[0-9]{1,2}[.)])[ \t]+", "")
    canon = canon.str.replace_all(r"\\[dt]?frac\s*([0-9])\s*([0-9])", r"\frac{$1}{$2}")
    canon = canon.str.replace_all(_FORMAT_COMMANDS, " ").str.replace_all(_SYNONYMS, " $1 ")
    canon = canon.str.replace_all(r"([0-9])\{,\}([0-9])", "$1$2")
    canon = canon.str.replace_all(r"([0-9]),([0-9]{3})", "$1$2").str.replace_all(
        r"([0-9]),([0-9]{3})", "$1$2"
    )
    # 27.0 == 27, 2.50 == 2.5 (AMC answers and reformatted copies write numbers both ways)
    canon = canon.str.replace_all(r"([0-9]\.[0-9]*?[1-9])0+([^0-9]|$)", "$1$2")
    canon = canon.str.replace_all(r"([0-9])\.0+([^0-9]|$)", "$1$2")
    for pattern, replacement in _POWERS:
        canon = canon.str.replace_all(pattern, replacement)
    return canon


def words_expr(text: pl.Expr) -> pl.Expr:
    """List of normalised words of each text: the unit of n-gram matching."""
    return normalised_expr(text).str.extract_all(WORD_PATTERN)


def number_value(word: pl.Expr) -> pl.Expr:
    """What the number check compares for a number word: number words as digits, and `10k` as `10^k`."""
    return word.replace(NUMBER_WORDS).str.replace(LOST_CARET, "10^$1")


def numbers_expr(text: pl.Expr) -> pl.Expr:
    """The numbers of each text, in order, repeats kept, as `number_value`s."""
    words = "|".join(NUMBER_WORDS)
    found = normalised_expr(text).str.extract_all(rf"{NUMBER_PATTERN}|\b(?:{words})\b")
    return found.list.eval(number_value(pl.element()))


def statement_expr(text: pl.Expr) -> pl.Expr:
    """A code problem's statement: harness wrapper removed, cut where I/O format, examples, constraints
    or doctests begin (kept whole when the cut would leave almost nothing)."""
    body = text.str.strip_chars()
    for wrapper in _CODE_WRAPPERS:
        body = body.str.replace(wrapper, "")
    cut = body.str.find(_CODE_SECTION)
    head = body.str.slice(0, cut).str.strip_chars()
    return (
        pl.when(cut.is_not_null() & (head.str.len_chars() >= MIN_STATEMENT_CHARS)).then(head).otherwise(body)
    )


def match_text_expr(text: pl.Expr, domain: pl.Expr) -> pl.Expr:
    """The text a benchmark item is matched on: the statement for code, the whole text otherwise."""
    return pl.when(domain == "code").then(statement_expr(text)).otherwise(text)
