import polars as pl
import xxhash

from stages.text import GUARD_TOKEN, canonical, canonical_text, dedup_key, guard_tokens, uid_expr, uid_of
from tests.conftest import shared_texts


def test_latex_spacing_case_and_whitespace_collapse():
    assert dedup_key(r"Compute \frac {1} {2}  +  X^ {2}") == dedup_key("compute \\frac{1}{2}+x^{2}")
    assert uid_of(r"Find $\frac {1} {2}$.") == uid_of("find\n  $\\frac{1}{2}$.")


def test_canonical_keeps_words_apart():
    assert canonical("  Find\tthe  SUM\u2028of x ") == "find the sum of x"


def test_nfkc_folds_compatibility_characters():
    assert canonical("Ｆｉｎｄ １２") == "find 12"  # full-width letters and digits
    assert canonical("x\u00a0=\u00a01") == "x = 1"  # no-break spaces


def test_different_numbers_stay_different():
    assert uid_of(r"Compute $\binom{8}{4}$.") != uid_of(r"Compute $\binom{9}{4}$.")
    assert uid_of("What is 12 + 3?") != uid_of("What is 1 + 23?")


def test_uid_is_xxh3_of_the_dedup_key_and_the_expression_agrees():
    text = "  What is 2 + 2?  "
    expected = xxhash.xxh3_64_hexdigest(b"whatis2+2?")
    assert uid_of(text) == expected
    frame = pl.DataFrame({"p": [text, None, "Ｆｉｎｄ"]})
    out = frame.select(uid_expr(pl.col("p")).alias("uid"), canonical_text(pl.col("p")).alias("c"))
    assert out["uid"].to_list() == [expected, None, xxhash.xxh3_64_hexdigest(b"find")]
    assert uid_of("Ｆｉｎｄ\u00a0X") == uid_of("find x"), "the non-ASCII path builds the same key"
    assert out["c"].to_list() == ["what is 2 + 2?", None, "find"]


EDGE_CASES = [
    "  Find\tthe  SUM\u2028of x ",
    "Ｆｉｎｄ １２",
    "x\u00a0=\u00a01",
    "ΣΑΣ ΟΔΟΣ",  # final sigma
    "İstanbul",  # lower case of a dotted capital I is two code points
    "a\x1cb\x1f c",  # separators that str.split splits on and \s does not match
    "\u3000x\u205f\u00a0y\x85",
    "x\u200by",  # a zero-width space is not whitespace
    "",
]


def test_canonical_text_is_canonical_on_every_shared_text(shared_data):
    texts = pl.concat([shared_texts(shared_data), pl.Series("text", EDGE_CASES)])
    assert texts.len() > 50_000
    got = texts.to_frame().select(canonical_text(pl.col("text"))).to_series()
    expected = pl.Series([canonical(t) for t in texts])
    differ = got != expected
    assert not differ.any(), list(zip(texts.filter(differ).head(3), got.filter(differ).head(3), strict=True))


def test_guard_tokens_match_the_guard_pattern():
    """The view-based guard agrees with GUARD_TOKEN's regex: ASCII and non-ASCII digits, numbers
    longer than a view's inline 12 bytes, the signs and the commands that only start like them."""
    tokens = ["0", "12", "3.5", "12345678901234.5", "٣", "٣٤٥٦٧٨٩٠١٢٣٤٥", "²", "1a", "a1", "+", "<", ">",
              "-", "=", r"\leq", r"\leqq", r"\leqslant", r"\geq", r"\neq", r"\ne", r"\pm", r"\pmod", r"\mp",
              r"\frac", "x", "é", "日本", "\x00", "+<"]  # fmt: skip
    for series in (pl.Series("token", tokens), pl.Series("token", tokens * 3).slice(5, 60)):
        assert guard_tokens(series).tolist() == series.str.contains(GUARD_TOKEN).to_list()
