"""The pair check (stages/dedup/pair_check.py): each rule on the pairs it is for, true duplicates
that must still go, and both dedup stages keeping the quickstart's wrongly removed pairs with the
rule in their report."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from stages.collect import FieldMap
from stages.dedup import embedding, minhash, pair_check
from stages.registry import run_stage
from stages.store import read_shards
from stages.text import math_text
from tests.conftest import collect_files, write_jsonl


def rule_of(a: str, b: str) -> str | None:
    """The rule that keeps a and b apart (None: a duplicate), on the texts as the stages compare them."""
    texts = pl.Series([a, b]).to_frame("t").select(math_text(pl.col("t"))).to_series()
    feats = pair_check.features(texts, raw=pl.Series([a, b]))
    return pair_check.check_pairs(feats, np.array([0]), np.array([1]))[0]


DECK = (
    "A standard deck of 52 cards has 13 ranks (Ace, Jack, Queen, King and the numbers) and 4 suits "
    "(spades, hearts, diamonds and clubs). Spades and clubs are black, hearts and diamonds are red. "
    "The deck is randomly arranged."
)
# (a, b, the rule that must keep them apart); phrased as the real sources phrase problems
DIFFERENT = [
    ("Find the remainder when $2^{100}$ is divided by 7.", "Find the remainder when $2^{100}$ is divided by 11.", "numbers"),
    ("A square has an area of 36. Find the length of its diagonal.", "A square has an area of 36. Find the length of its diagonal, rounded to 2 places.", "numbers"),
    ("Given $k > 0$, find the range of $f$.", "Given $k < 0$, find the range of $f$.", "numbers"),
    ("Write a function that matches a string that has an a followed by two to three 'b'.", "Write a function that matches a string that has an a followed by three 'b'.", "numbers"),
    ("Simplify $x \\times y$ for the given values.", "Simplify $x \\div y$ for the given values.", "operators"),
    ("Find all $x$ such that $\\sin x = \\cos x$ on the interval.", "Find all $x$ such that $\\sin x = \\tan x$ on the interval.", "operators"),
    ("Write a python function to toggle all odd bits of a given number.", "Write a python function to toggle all even bits of a given number.", "antonym:parity"),
    ("Write a python function to find the minimum element in a sorted and rotated array.", "Write a python function to find the maximum element in a sorted and rotated array.", "antonym:extreme"),
    ("Find the smallest positive multiple of 15 whose digits are all 8 or 0.", "Find the largest positive multiple of 15 whose digits are all 8 or 0.", "antonym:extreme"),
    ("Write a function to find the first position of an element in a sorted array.", "Write a function to find the last position of an element in a sorted array.", "antonym:position"),
    ("Write a function to remove lowercase substrings from a given string by using regex.", "Write a function to remove uppercase substrings from a given string by using regex.", "antonym:case"),
    ("Given the root of a binary tree, return the preorder traversal of its nodes' values.", "Given the root of a binary tree, return the postorder traversal of its nodes' values.", "antonym:traversal"),
    ("Given the root of a binary tree, return the in-order traversal of its nodes' values.", "Given the root of a binary tree, return the pre-order traversal of its nodes' values.", "antonym:traversal"),
    ("In how many ways can we choose 6 starters if at most one of the triplets is in the lineup?", "In how many ways can we choose 6 starters if at least one of the triplets is in the lineup?", "antonym:bound"),
    ("Given a string s, return the length of the longest substring that contains at most two distinct characters.", "Given a string s, find the length of the longest substring without repeating characters.", "numbers"),
    ("Write a function to check whether a sequence of numbers has an increasing trend or not.", "Write a function to check whether a sequence of numbers has a decreasing trend or not.", "antonym:monotone"),
    ("Write a function to sort a list of elements in ascending order.", "Write a function to sort a list of elements in descending order.", "antonym:monotone"),
    ("Write a function to add an element to the heap.", "Write a function to remove an element from the heap.", "antonym:edit"),
    ("Write a function to find the sum of the digits of a number.", "Write a function to find the product of the digits of a number.", "antonym:arithmetic"),
    ("Write a python function to count the number of vowels in a string.", "Write a python function to count the number of consonants in a string.", "antonym:letters"),
    ("Find the area of the triangle shown.", "Find the perimeter of the triangle shown.", "antonym:measure"),
    ("How many ways can we choose a president and a vice-president if they must be of different gender?", "How many ways can we choose a president and a vice-president if they must be of the same gender?", "antonym:sameness"),
    ("Write a function to convert the given decimal number to its binary equivalent.", "Write a function to convert the given binary number to its decimal equivalent.", "direction"),
    ("Write a function to convert a given string to a tuple.", "Write a function to convert tuple to a string.", "direction"),
    ("Write a python function to find the first non-repeated character in a given string.", "Write a python function to find the first repeated character in a given string.", "negation"),
    ("Find the number of integers that are not divisible by 3 between 1 and 100.", "Find the number of integers that are divisible by 3 between 1 and 100.", "negation"),
    ("Write a function to find the nth hexagonal number.", "Write a function to find nth centered hexagonal number.", "qualifier"),
    ("Write a function to find the longest strictly increasing subsequence.", "Write a function to find the longest increasing subsequence.", "qualifier"),
    ("Write a function to find the area of a pentagon.", "Write a function to find the area of a trapezium.", "substitution"),
    ("Determine the number of ways to arrange the letters of the word TOOT.", "Determine the number of ways to arrange the letters of the word ELLIPSE.", "substitution"),
    ("In trapezoid ABCD with AB parallel to CD, angle A is twice angle D. Find angle A.", "In trapezoid ABCD with AB parallel to CD, angle A is twice angle D. Find angle B.", "substitution"),
    ("How many ways are there to put 4 balls into 2 distinguishable boxes?", "How many ways are there to put 4 balls into 2 indistinguishable boxes?", "substitution"),
    ("Fisica and Ritmo measured a box of Notalium with rulers; Fisica rounded her product to 2017 cubic centimetres and Ritmo rounded his to V cubic centimetres. Find the difference between the largest and smallest possible V.", "Fisica and Ritmo measured a box of Notalium with rulers; Fisica rounded her product to V cubic centimetres and Ritmo rounded his to 2017 cubic centimetres. Find the difference between the largest and smallest possible V.", "substitution"),
    (f"{DECK} What is the probability that the top card is red and the second card is black?", f"{DECK} What is the probability that the top card is the King of hearts?", "question"),
    ("The sequence $(a_n)$ satisfies $a_0=0$ and $a_{n+1} = 2a_n + 1$. Find the greatest integer less than or equal to $a_{10}$.", "The sequence $(a_n)$ satisfies $a_0=0$ and $a_{n+1} = 2a_n + 1$. Find $a_{10}$.", "operators"),
]  # fmt: skip

# true duplicates: the check must let them go
SAME = [
    ("Write a function to remove multiple spaces in a string.", "Write a function to remove multiple spaces in a string by using regex."),
    ("Given that $a_{28}=6090307$, find the remainder when $\\sum^{28}_{k=1} a_k$ is divided by 1000.", "Given that $a_{28}=6090307$, find the remainder when $\\displaystyle\\sum_{k=1}^{28}a_k$ is divided by 1000."),
    ("Rectangle $ABCD_{}^{}$ has sides of length 4 and 3. Find the sum of the lengths.", "Rectangle $ABCD$ has sides of length 4 and 3. Find the sum of the lengths."),
    ("Find the smallest $x$ for which $f(x) = f(2001)$, where $1\\le x \\le 3$.", "Find the smallest $x$ for which $f(x) = f(2001)$, where $1\\leq x \\leq 3$."),
    ("Every card in a deck has a picture of one shape. How many different cards are there?", "Every card in a deck has a picture of one shape. How many different card are there?"),
    ("The two persons with lower numbered cards form a team.", "The two persons with lower numbered cards from a team."),
    ("There are two values of $a$ for which the equation has one solution. What is the sum of those values?", "There are two values of $a$ for which the equation has one solution. What is the sum of these values?"),
    ("If $x,$ $y$ are positive real numbers, find the maximum possible value of $k.$", "If $x, y$ are positive reals, find the maximum possible value of $k$."),
    ("Suppose that the roots of $x^3+3x^2+4x-11=0$ are $a$, $b$, $c$. Find $t$.\n ~ pi_is_3.14", "Suppose that the roots of $x^3+3x^2+4x-11=0$ are $a$, $b$, $c$. Find $t$."),
    ("Find $AB$. [asy] draw((0,0)--(1,1)); [/asy]\n Credit to Royalreter1 and chezbgone2 for the diagram", "Find $AB$. [asy] draw((0,0)--(1,1)); [/asy]"),
    # a user name full of numbers and a minus sign, next to AoPS's empty `^{}_{}`
    ("Twelve disks cover $C^{}_{}$. Find $a+b+c^{}_{}$. [asy] dot((0,0)); [/asy]_Diagram by 1-1 is 3_", "Twelve disks cover $C$. Find $a+b+c$. [asy] dot((0,0)); [/asy]"),
    # a renamed person is no other problem (a capitalised word never written in lower case)
    ("Josie received $50 as a gift. She buys two tapes that cost $9 each. How much money will she have left?", "Amanda received $50 as a gift. She buys two tapes that cost $9 each. How much money will she have left?"),
    # the floor notation defined in one copy only
    ("Compute $\\lfloor \\frac{2005^3}{2003 \\cdot 2004} \\rfloor,$ where $\\lfloor x \\rfloor$ denotes the greatest integer less than or equal to $x.$", "Compute $\\lfloor \\frac{2005^3}{2003 \\cdot 2004} \\rfloor$"),
    ("What is $110\\%$ of 500?", "Which of the following is equal to $110 \\%$ of 500?"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("a", "b", "rule"), DIFFERENT, ids=[f"{r}-{i}" for i, (_, _, r) in enumerate(DIFFERENT)]
)
def test_rule_keeps_a_different_problem(a, b, rule):
    assert rule_of(a, b) == rule
    assert rule_of(b, a) == rule  # symmetric


@pytest.mark.parametrize(("a", "b"), SAME, ids=[str(i) for i in range(len(SAME))])
def test_true_duplicates_still_go(a, b):
    assert rule_of(a, b) is None


def test_every_antonym_class_and_rule_is_exercised():
    used = {rule for _, _, rule in DIFFERENT}
    assert set(pair_check.RULES) - {"antonym"} <= used
    assert len({r for r in used if r.startswith("antonym:")}) >= 10


def test_rules_can_be_switched_off_and_empty_input_works():
    texts = pl.Series(["find the odd bits", "find the even bits"])
    feats = pair_check.features(texts)
    assert pair_check.check_pairs(feats, np.array([0]), np.array([1]), ("numbers",))[0] is None
    assert pair_check.check_pairs(feats, np.array([], dtype=np.int64), np.array([], dtype=np.int64)).size == 0


# The quickstart's rows that the two stages removed before the check (docs/dedup.md), plus a true
# duplicate that must still be removed, with its evidence.
LEETCODE = (
    "Please solve the programming task below using a self-contained code snippet in a markdown code block."
)
COMPLETE = (
    "Please complete the following python code precisely: ```python # Definition for a binary tree node. "
    "# class TreeNode: # def __init__(self, val=0, left=None, right=None): # self.val = val "
    "# self.left = left # self.right = right class Solution:"
)
QUICKSTART = [
    "Write a function to convert the given decimal number to its binary equivalent.",
    "Write a function to convert the given binary number to its decimal equivalent.",
    "Write a python function to toggle all odd bits of a given number.",
    "Write a python function to toggle all even bits of a given number.",
    "Write a python function to find the first non-repeated character in a given string.",
    "Write a python function to find the first repeated character in a given string.",
    "Write a function to find the nth hexagonal number.",
    "Write a function to find nth centered hexagonal number.",
    "Write a function to remove lowercase substrings from a given string by using regex.",
    "Write a function to remove uppercase substrings from a given string by using regex.",
    f"{LEETCODE} Given the root of a binary tree, return the preorder traversal of its nodes' values. "
    f"{COMPLETE} def preorderTraversal(self, root: Optional[TreeNode]) -> List[int]:",
    f"{LEETCODE} Given the root of a binary tree, return the postorder traversal of its nodes' values. "
    f"{COMPLETE} def postorderTraversal(self, root: Optional[TreeNode]) -> List[int]:",
    "Find the sum of the first $n$ odd numbers, where $n \\le 100$.",
    "Calculate the sum of the first \\(n\\) odd numbers, where \\(n \\leq 100\\).",
]


@pytest.fixture(scope="module")
def quickstart_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rows = [{"problem": p, "source": "mbpp"} for p in QUICKSTART]
    collect_files([write_jsonl(root / "pairs.jsonl", rows)], FieldMap(), root / "00-collect")
    return root


def removed(stage_dir) -> list[tuple[str, dict]]:
    return [
        (text, json.loads(detail))
        for batch in read_shards(stage_dir / "dropped")
        for text, detail in zip(batch["problem"], batch["drop_detail"], strict=True)
    ]


@pytest.mark.parametrize(
    ("name", "fn", "config"),
    [
        ("minhash", minhash.MinhashDedup(), minhash.MinhashDedupConfig(threshold=0.6)),
        ("embedding", embedding.EmbeddingDedup(), embedding.EmbeddingDedupConfig(progress=False)),
    ],
)
def test_stages_keep_different_problems_and_record_the_rule(quickstart_pairs, name, fn, config):
    out = quickstart_pairs / name
    rep = run_stage(fn, quickstart_pairs / "00-collect" / "kept", config, out, force=True).model_dump(
        mode="json"
    )
    gone = removed(out)
    assert [text for text, _ in gone] == [QUICKSTART[-1]]  # only the true duplicate goes
    assert gone[0][1]["method"] == name and gone[0][1]["similarity"] >= config.threshold
    assert rep["rows_in"] == rep["rows_kept"] + rep["rows_dropped"] == len(QUICKSTART)
    details = rep["details"]
    assert details["pairs"]["kept_by_check"] == sum(
        n for rule, n in details["kept_by_rule"].items() if rule != "numbers"
    )
    assert details["pairs"]["kept_by_check"] >= (4 if name == "embedding" else 1)
    shown = details["pair_check_examples"]
    assert shown and all(e["rule"] and not e["joined"] and e["a"]["text"] and e["b"]["text"] for e in shown)
    assert {e["rule"] for e in shown} <= {
        *pair_check.TEXT_RULES,
        *(f"antonym:{c}" for c in pair_check.ANTONYMS),
    }


def test_switching_the_check_off_restores_the_old_removals(quickstart_pairs):
    out = quickstart_pairs / "embedding-off"
    config = embedding.EmbeddingDedupConfig(progress=False, pair_check=False)
    rep = run_stage(
        embedding.EmbeddingDedup(), quickstart_pairs / "00-collect" / "kept", config, out
    ).model_dump()
    assert rep["rows_dropped"] > 1 and rep["details"]["pairs"]["kept_by_check"] == 0
