"""The second look at a near-duplicate candidate pair: does what differs between the two texts change
what is asked? Shared by MinHash and embedding dedup; runs on candidate pairs only.

Similarity scores (n-gram Jaccard, embedding cosine) weigh every token alike, so two short problems
that differ in one word sit above any threshold while asking the opposite thing: "decimal to binary"
vs "binary to decimal", "odd bits" vs "even bits", "first repeated character" vs "first
non-repeated character", "nth hexagonal number" vs "nth centered hexagonal number". Each rule below
names one kind of difference that keeps a pair apart; a pair that no rule keeps is a duplicate.

The rules, in the order they are reported (the first that holds names the reason):

- `numbers`: the multisets of numbers and of the signs <, >, \\leq, \\geq, \\neq, \\pm, + differ (the
  number guard, `stages.text.number_key`), unless all that tells the texts apart is one annotation
  whose numbers belong to names ("Credit to Royalreter1 ...", "~ pi_is_3.14");
- `operators`: the sets of other operators differ (- next to a digit, *, /, ^, !, \\times,
  \\cdot, \\div, \\sqrt, \\sin, \\log, \\sum, ...);
- `antonym`: for a class of opposite or alternative terms (odd/even, minimum/maximum, first/last,
  upper/lower case, pre/in/post-order, at most/at least, increasing/decreasing, add/remove, ...), the
  texts use the terms a different number of times;
- `direction`: the same two words on both sides of "to"/"into", swapped ("decimal to binary" vs
  "binary to decimal");
- `negation`: a different count of negations (not, no, non-..., without, never, n't);
- `qualifier`: a word that narrows what is asked (centered, strictly, consecutive, distinct, proper,
  ...) is in one text and not the other;
- `substitution`: the texts differ in at most two places and one of them is a single word swapped
  for another that is neither an inflection nor a typo of it ("area of a pentagon" vs "area of a
  trapezium", "find angle A" vs "find angle B", "TOOT" vs "TARTAR"), or two words trade places
  ("2017 ... V" vs "V ... 2017"), or a word is negated in the other text ("distinguishable" vs
  "indistinguishable"); one name for another ("Josie" vs "Amanda") is no substitution;
- `question`: the same setup with another question: each text's question (its last sentence that
  asks: find, what, how, which, return, ...) has a word the other's question lacks but the other
  text mentions in its setup ("the probability that the second card is black" vs "... is the King of
  diamonds", with both colours and all ranks in the shared setup).

A pair whose only difference is a credit ("Diagram by 1-1 is 3") is never kept apart.

Features are computed per row with polars string kernels (`features`), and compared per pair with
numpy (`check_pairs`); `direction` and `substitution` compare the words of the two texts in Python,
only for the pairs no earlier rule kept apart (candidate pairs above the threshold: a few thousand in
22k real problems).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import polars as pl
from rapidfuzz.distance import Levenshtein

from stages.text import number_key

RULES = ("numbers", "operators", "antonym", "direction", "negation", "qualifier", "substitution", "question")
PAIR_CHECK_HELP = (
    "second look at each pair above the threshold: keep both rows when what differs changes what is asked "
    "(an operator, odd/even, min/max, first/last, a swapped or negated word; stages/dedup/pair_check.py)"
)
TEXT_RULES = RULES[1:]  # what the stages run after their number guard (`number_guard` switches that)

# Phrase rewrites applied (on the lower-cased, math-normalised text) before any rule looks at words:
# multi-word terms become one word, so that `\bleast\b` does not match "at least".
_PHRASES: list[tuple[str, str]] = [
    (r"\b(?:at most|no more than|not more than|not exceeding|up to)\b", " atmost "),
    (r"\b(?:at least|no less than|not less than|no fewer than|not fewer than)\b", " atleast "),
    (r"\bnon[- ]?", "non"),
    (r"\b(pre|post|in|level)[- ]order\b(\s+traversal)?", "${1}order$2"),
    (r"\b(lower|upper)[- ]case\b", "${1}case"),
    (r"\b(?:counter|anti)[- ]?clockwise\b", "counterclockwise"),
    (r"\bcan ?not\b|n't\b", " not"),
    (r"\b(?:is|are|be) equal to\b", "equals"),  # "which ... is equal to 110% of 500": no sameness asked
    # floor and ceiling spelt out are the operators (one copy defines the notation, another does not;
    # "find the greatest integer less than or equal to a_10" asks for a floor)
    (
        r"\b(?:the )?(?:greatest|largest) integer (?:that is )?(?:less than or equal to|not exceeding|atmost)\b",
        r" \lfloor ",
    ),
    (
        r"\b(?:the )?(?:least|smallest) integer (?:that is )?(?:greater than or equal to|not less than|atleast)\b",
        r" \lceil ",
    ),
    (r"[_^]\{\s*\}", " "),  # empty sub/superscripts: AIME's `$ABCD_{}^{}$` artefacts
    ("_", " "),  # `\sum_{k}`, `a_n`: word boundaries after commands and variables
]

# Classes of mutually exclusive terms; each class is a list of poles, each pole a regex of words
# that mean the same thing. Two texts differ on a class when the sets of poles they use differ.
ANTONYMS: dict[str, list[str]] = {
    "parity": [r"odd", r"even"],
    "extreme": [
        r"min|minimum|minimal|minimi[sz]e[sd]?|smallest|lowest|fewest|least",
        r"max|maximum|maximal|maximi[sz]e[sd]?|largest|greatest|highest|biggest|most",
    ],
    "length": [r"shortest", r"longest"],
    "bound": [r"atmost", r"atleast", r"exactly"],
    "comparison": [r"greater|larger|bigger|more|exceeds?", r"less|smaller|fewer"],
    "position": [r"first|beginning|start|starts|leading|prefix", r"last|end|ends|ending|trailing|suffix"],
    "before_after": [r"before|preceding|previous", r"after|next"],
    "side": [r"left|leftmost", r"right|rightmost"],
    "vertical": [r"top|above", r"bottom|below"],
    "case": [r"lowercase|lower", r"uppercase|upper|capital|capitals|capitalized"],
    "traversal": [r"preorder", r"inorder", r"postorder", r"levelorder"],
    "monotone": [
        r"increasing|ascending|increase|increases",
        r"decreasing|descending|decrease|decreases",
        r"nondecreasing",
        r"nonincreasing",
    ],
    "edit": [r"add|adds|insert|inserts|append|appends|push", r"remove|removes|delete|deletes|erase|pop"],
    "order": [r"sorted|sort", r"unsorted|shuffled|random"],
    "arithmetic": [r"sum|total", r"product", r"difference", r"quotient|ratio", r"average|mean", r"median"],
    "progression": [r"arithmetic|arithemetic", r"geometric", r"harmonic"],
    "base": [r"binary", r"octal", r"decimal", r"hexadecimal|hex"],
    "sign": [r"positive", r"negative", r"nonnegative", r"nonpositive", r"nonzero"],
    "primality": [r"prime|primes", r"composite"],
    "letters": [r"vowels?", r"consonants?"],
    "set_op": [r"union", r"intersection"],
    "measure": [r"area", r"perimeter|circumference", r"volume", r"surface"],
    "trig": [r"sine|sin", r"cosine|cos", r"tangent|tan"],
    "axis": [r"rows?", r"columns?"],
    "orientation": [r"horizontal|horizontally", r"vertical|vertically", r"diagonal|diagonally"],
    "rotation": [r"clockwise", r"counterclockwise"],
    "inclusion": [r"inside|interior|inscribed", r"outside|exterior|circumscribed"],
    "coding": [r"encode|encrypt|compress", r"decode|decrypt|decompress"],
    "truth": [r"true", r"false"],
    "angle": [r"acute", r"obtuse"],
    "sameness": [r"same|identical|equal", r"different|differ|differs|unequal"],
}

# Words that narrow what is asked; one text having one and the other not keeps the pair apart.
QUALIFIERS = (
    "centered|centred|strictly|consecutive|adjacent|contiguous|distinct|unique|proper|perfect|"
    "palindromic|palindrome|reversed|reverse|sorted|rotated|cyclic|circular|weighted|directed|"
    "undirected|absolute|relative|square|cube|cubes|squares|repeated|repeating|duplicate|duplicates|"
    "nested|balanced|complete|full|empty|subsequence|substring|subarray|subset|permutation|"
    "permutations|combination|combinations|equilateral|isosceles|regular|convex|inverse|zigzag|spiral|lateral|"
    "nearest|closest|rounded|"
    "modified"
)

# numbers spelt out ("two to three b's", "two balls"); not "one", which is also a pronoun
_NUMBER_WORDS = (
    r"\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundred|thousand|"
    r"million|twice|thrice|half|double|triple)\b"
)
_NEGATION = r"\b(?:not|no|none|without|never|neither|nor|non\w+)\b"
_OPERATOR = (
    r"\\(?:times|cdot|div|sqrt|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|log|ln|exp|sum|prod|int|"
    r"lim|cup|cap|setminus|lfloor|rfloor|lceil|rceil|mid|perp|parallel|angle|circ|"
    r"alpha|beta|gamma|delta|epsilon|theta|lambda|mu|pi|rho|sigma|tau|phi|psi|omega)\b"
    r"|\d-|-\d|\^|[\w)}\]][*/!]"
)
_TO = ("to", "into")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "for",
        "and",
        "or",
        "any",
        "all",
        "each",
        "its",
        "it",
        "is",
        "are",
        "be",
        "that",
        "this",
        "with",
        "from",
        "by",
        "as",
        "given",
        "value",
        "values",
        "function",
        "program",
    ]
)
_WINDOW = 2  # content words looked at on each side of "to"


def diff_ops(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """The places where two token lists differ, as difflib-style (tag, i1, i2, j1, j2) blocks: a minimal
    edit script (rapidfuzz, C++; difflib's matcher was most of the check's time) with adjacent edits
    merged into one block, so that "two words for three" is one `replace`, as a reader counts it."""
    out: list[tuple[str, int, int, int, int]] = []
    for op in Levenshtein.opcodes(a, b):
        if op.tag == "equal":
            continue
        if out and out[-1][2] == op.src_start and out[-1][4] == op.dest_start:
            _, i1, _, j1, _ = out.pop()
        else:
            i1, j1 = op.src_start, op.dest_start
        i2, j2 = op.src_end, op.dest_end
        tag = "replace" if i2 > i1 and j2 > j1 else ("delete" if i2 > i1 else "insert")
        out.append((tag, i1, i2, j1, j2))
    return out


def check_text(expr: pl.Expr) -> pl.Expr:
    """The form the rules read: lower case (apply to `math_text`), multi-word terms joined."""
    out = expr.str.to_lowercase()
    for pattern, replacement in _PHRASES:
        out = out.str.replace_all(pattern, replacement)
    return out


def _poles(text: pl.Expr, poles: list[str]) -> pl.Expr:
    """How often the text uses each pole of a class, packed 4 bits a pole (so "below" in a shared
    preamble does not hide a "bottom-up" that only one text has)."""
    counts = [
        text.str.count_matches(rf"\b(?:{p})\b").clip(0, 15).cast(pl.Int64) * (1 << (4 * i))
        for i, p in enumerate(poles)
    ]
    return pl.sum_horizontal(counts)


def features(texts: pl.Series, raw: pl.Series | None = None) -> pl.DataFrame:
    """Per text (as compared: math-normalised), what the rules compare: one column per rule or class.
    `raw` (the texts as written; default `texts`) gives `names`: capitalised words never written in
    lower case, which math normalisation would have lower-cased."""
    text = pl.col("t")
    frame = pl.DataFrame({"t": texts.fill_null(""), "raw": (texts if raw is None else raw).fill_null("")})
    frame = frame.with_columns(check_text(text).alias("c"))
    c = pl.col("c")
    return frame.select(
        pl.concat_str(number_key(text), c.str.extract_all(_NUMBER_WORDS).list.sort().list.join(" "))
        .hash(seed=7)
        .alias("numbers"),
        c.str.replace_all("_", " ")
        .str.extract_all(_OPERATOR)
        .list.eval(pl.element().str.extract(r"(\\[a-z]+|[-*/^!])", 1))
        .list.unique()
        .list.sort()
        .list.join(" ")
        .hash(seed=7)
        .alias("operators"),
        *(_poles(c, poles).alias(f"antonym:{name}") for name, poles in ANTONYMS.items()),
        c.str.extract_all(rf"\b(?:{QUALIFIERS})\b")
        .list.unique()
        .list.sort()
        .list.join(" ")
        .alias("qualifier"),
        c.str.count_matches(_NEGATION).alias("negation"),
        c.str.contains(_CREDIT_PATTERN).alias("credit"),
        c.str.replace_all(r"[^a-z0-9\\]+", " ").alias("words"),
        pl.col("raw")
        .str.extract_all(r"\b[A-Z][a-z]+\b")
        .list.eval(pl.element().str.to_lowercase())
        .list.set_difference(pl.col("raw").str.extract_all(r"\b[a-z]+\b"))
        .alias("names"),
        c.str.replace_all(r"[^a-z0-9\\.?!]+", " ").alias("sentences"),
        text,
    )


def _directed(text: str) -> set[tuple[str, str]]:
    """(word before "to", word after) for the content words within `_WINDOW` of each "to"/"into"."""
    words = [w for w in text.split() if w not in _STOP]
    out: set[tuple[str, str]] = set()
    for i in (i for i, w in enumerate(words) if w in _TO):
        before = [x for x in words[max(0, i - _WINDOW) : i] if x.isalpha() and x not in _TO]
        after = [x for x in words[i + 1 : i + _WINDOW + 1] if x.isalpha() and x not in _TO]
        out.update((x, y) for x, y in itertools.product(before, after) if x != y)
    return out


def swapped(a: str, b: str) -> bool:
    """Whether some word pair goes "x to y" in one text and "y to x" in the other (and not both ways)."""
    da, db = _directed(a), _directed(b)
    return any((y, x) in db and (x, y) not in db and (y, x) not in da for x, y in da)


_NEGATING_PREFIXES = ("in", "un", "non", "dis", "im", "ir", "il")
_MAX_EDITS = 2  # substitution: the texts differ in at most this many places


def _inflection_or_typo(x: str, y: str) -> bool:
    """ "card"/"cards", "leveled"/"level", "form"/"from", "those"/"these": not a different word."""
    if min(len(x), len(y)) < 4:
        return False
    if x[:4] == y[:4]:
        return True
    if sorted(x) == sorted(y):  # letters transposed
        return True
    return len(x) == len(y) and sum(p != q for p, q in zip(x, y, strict=True)) <= 2


def _synonyms(u: str, v: str) -> bool:
    """Two words of the same pole of an antonym class ("greatest"/"largest", "add"/"insert")."""
    return any(
        re.fullmatch(pole, u) and re.fullmatch(pole, v) for poles in ANTONYMS.values() for pole in poles
    )


def _swapped_word(x: list[str], y: list[str], only_edit: bool, names: frozenset[str]) -> bool:
    """Whether a replaced span is one content word swapped for another (stop words aside); a single
    letter (a variable: "angle a" vs "angle b") counts only when it is the texts' only difference,
    and two `names` (a renamed person: "Josie" vs "Amanda") do not count."""
    if len(x) > 1 or len(y) > 1:
        x, y = [w for w in x if w not in _FILLER], [w for w in y if w not in _FILLER]
    if len(x) != 1 or len(y) != 1:
        return False
    u, v = x[0], y[0]
    if u == v or not (u.isalpha() and v.isalpha()) or _synonyms(u, v) or {u, v} <= names:
        return False
    if len(u) == 1 or len(v) == 1:
        return only_edit and len(u) == len(v) == 1
    return not _inflection_or_typo(u, v)


def substituted(a: str, b: str, names: frozenset[str] = frozenset()) -> bool:
    """Whether the texts differ in at most `_MAX_EDITS` places, one of them a single word swapped for
    another (not an inflection or typo of it, not one name for another), or whether a word in one is
    negated in the other."""
    ta, tb = a.split(), b.split()
    only_a, only_b = set(ta) - set(tb), set(tb) - set(ta)
    if any(p + w in only_b for w in only_a for p in _NEGATING_PREFIXES) or any(
        p + w in only_a for w in only_b for p in _NEGATING_PREFIXES
    ):
        return True
    ops = diff_ops(ta, tb)
    if len(ops) == 2 and all(op[0] == "replace" for op in ops):  # "x ... y" vs "y ... x"
        (_, i1, i2, j1, j2), (_, k1, k2, l1, l2) = ops
        if ta[i1:i2] == tb[l1:l2] and ta[k1:k2] == tb[j1:j2]:
            return True
    return len(ops) <= _MAX_EDITS and any(
        tag == "replace" and _swapped_word(ta[i1:i2], tb[j1:j2], len(ops) == 1, names)
        for tag, i1, i2, j1, j2 in ops
    )


_ASKS = frozenset(
    [
        "count",
        "get",
        "calculate",
        "find",
        "how",
        "what",
        "which",
        "why",
        "prove",
        "return",
        "returns",
        "print",
        "output",
        "determine",
    ]
)
_FILLER = _STOP | _ASKS | frozenset(["many", "much", "possible", "is", "are", "do", "does", "can", "will"])


def _question(text: str) -> tuple[set[str], set[str]]:
    """(content words of the text's question sentence, content words of the rest of the text)."""
    sentences = [s.split() for s in re.split(r"[.?!]\s|\?", text) if s.strip()]
    if not sentences:
        return set(), set()
    asking = [i for i, words in enumerate(sentences) if _ASKS & set(words)]
    q = asking[-1] if asking else len(sentences) - 1
    content = [{w for w in words if w not in _FILLER and len(w) > 1} for words in sentences]
    return content[q], set().union(*content[:q], *content[q + 1 :])


def other_question(a: str, b: str) -> bool:
    """Whether each question asks about something the other text mentions only in its setup."""
    (qa, rest_a), (qb, rest_b) = _question(a), _question(b)
    return bool((qa - qb) & rest_b) and bool((qb - qa) & rest_a)


_TOKEN_SPLIT = re.compile(r"[\s,;:?!]+|\.(?!\d)|(?<=[\])}])(?=[a-z_~])")  # "[/asy]credit": two tokens
_FREE_NUMBER = re.compile(r"(?:^|[^a-z_\d.\\])\d")  # a number not glued to a name or subscript
_GUARD_SIGN = re.compile(r"[<>=+]|\\(?:leq|geq|neq|pm|mp)\b")
# a span that opens with a credit ("Diagram by 1-1 is 3", "~pi_is_3.14") is an annotation whatever its
# numbers: they belong to a user name
_CREDIT_PATTERN = r"(?:diagram|figure|picture|credits?) (?:by|to)\b|~"
_CREDIT = re.compile(rf"^_?(?:{_CREDIT_PATTERN})", re.I)


def _inserted_span(a: str, b: str) -> str | None:
    """The one span that one text (math-normalised: AoPS's empty `C^{}_{}` is already `C`) has and
    the other lacks, when that is all that tells them apart; else None."""
    ta, tb = [t for t in _TOKEN_SPLIT.split(a) if t], [t for t in _TOKEN_SPLIT.split(b) if t]
    ops = diff_ops(ta, tb)
    if len(ops) != 1 or ops[0][0] == "replace":
        return None
    _, i1, i2, j1, j2 = ops[0]
    return " ".join(ta[i1:i2] + tb[j1:j2])


def credit_only(a: str, b: str) -> bool:
    """Whether all that tells the texts apart is a credit ("Diagram by 1-1 is 3", "~pi_is_3.14"): no
    rule keeps such a pair apart, whatever numbers or operators the user name holds."""
    span = _inserted_span(a, b)
    return span is not None and bool(_CREDIT.match(span))


def annotation_only(a: str, b: str) -> bool:
    """Whether two texts (math-normalised) differ only by one span that one has and the other lacks,
    whose numbers all belong to names or subscripts and which has no sign the number guard compares:
    an author tag ("~ pi_is_3.14"), a credit line ("credit to Royalreter1 and chezbgone2"), a lost
    "P_1P_2,". Such a difference in numbers is no different problem; "of radius 3" is."""
    span = _inserted_span(a, b)
    return span is not None and not (
        _FREE_NUMBER.search(span) or _GUARD_SIGN.search(span) or re.search(_NUMBER_WORDS, span)
    )


def numbers_differ(feats: pl.DataFrame, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The number guard: the multisets of numbers and signs differ (`stages.text.number_key`), unless
    only an annotation (`annotation_only`) tells the texts apart."""
    key = feats["numbers"].to_numpy()
    differ = key[src] != key[dst]
    todo = np.flatnonzero(differ)
    if todo.size:
        a, b = feats["t"].gather(src[todo]).to_list(), feats["t"].gather(dst[todo]).to_list()
        differ[todo] = [not annotation_only(x, y) for x, y in zip(a, b, strict=True)]
    return differ


# rules that compare the words of two texts in Python: (feature columns read, comparison of two rows)
_WORD_RULES = {
    "direction": (("words",), lambda a, b: swapped(a["words"], b["words"])),
    "substitution": (
        ("words", "names"),
        lambda a, b: substituted(a["words"], b["words"], frozenset(a["names"]) | frozenset(b["names"])),
    ),
    "question": (("sentences",), lambda a, b: other_question(a["sentences"], b["sentences"])),
}


def check_pairs(
    feats: pl.DataFrame, src: np.ndarray, dst: np.ndarray, rules: tuple[str, ...] = RULES
) -> np.ndarray:
    """Per pair (rows src[i], dst[i] of `feats`), the first rule in `rules` that keeps the two apart
    ("antonym:<class>" for antonyms), or None when none does (the pair may be joined)."""
    reason = np.full(src.size, None, dtype=object)
    if src.size == 0:
        return reason
    open_ = np.ones(src.size, dtype=bool)

    def mark(name: str, differs: np.ndarray) -> None:
        hit = open_ & differs
        reason[hit] = name
        open_[hit] = False

    for rule in rules:
        if rule == "antonym":
            for name in ANTONYMS:
                col = feats[f"antonym:{name}"].to_numpy()
                mark(f"antonym:{name}", col[src] != col[dst])
        elif rule in _WORD_RULES:
            columns, differs = _WORD_RULES[rule]
            todo = np.flatnonzero(open_)
            rows = feats.select(columns)
            a, b = rows[src[todo]].rows(named=True), rows[dst[todo]].rows(named=True)
            hit = np.zeros(src.size, dtype=bool)
            hit[todo] = [differs(x, y) for x, y in zip(a, b, strict=True)]
            mark(rule, hit)
        elif rule == "numbers":
            mark(rule, numbers_differ(feats, src, dst))
        else:
            col = feats[rule].to_numpy()
            mark(rule, col[src] != col[dst])
    kept = np.flatnonzero(~open_)
    credit = feats["credit"].to_numpy()
    kept = kept[credit[src[kept]] | credit[dst[kept]]]
    if kept.size:
        a, b = feats["t"].gather(src[kept]).to_list(), feats["t"].gather(dst[kept]).to_list()
        reason[kept[[credit_only(x, y) for x, y in zip(a, b, strict=True)]]] = None
    return reason
