"""Keep the problems a rule-based reward can grade: a gold answer that math-verify parses.

DeepScaleR (agentica-project/rllm, rllm/data/preprocess/math/deepscaler.ipynb) kept a problem only when
`should_allow_eval(_normalize(answer))` (their sympy checks, rllm/rewards/math_utils/utils.py) accepted
its answer; Skywork-OR1 removed problems without a verifiable answer. Here the check is the verifier's
own: the gold answer goes through math-verify's parser (stages.verify.mathcheck's extraction settings),
and answers of one or two words and option letters count as gradable because the verifier compares those
by rule.
Rows are dropped with `no_answer` (no gold) or `ungradable` (math-verify finds no expression); code rows
with tests and rows of `keep_domains` pass untouched.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import polars as pl
from math_verify import parse
from math_verify.errors import TimeoutException
from pydantic import BaseModel, ConfigDict, Field

from stages.stage import Context, Decision, Details, MapStage, dropped_with
from stages.verify.mathcheck import _EXTRACTION, _is_word, _strip_text, choice_letter

_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_PROSE = re.compile(r"[A-Za-z]{2,}")
MAX_WORDS = 2  # "odd", "no solution": compared by rule; a sentence is not an answer a rule can grade
PARSE_TIMEOUT_S = 5  # the verifier's own limit (stages.verify.mathcheck.check_math)


class GradableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_domains: list[str] = Field(
        default_factory=lambda: ["code"], description="domains passed untouched (code is graded by tests)"
    )


class GradableDetails(Details):
    no_answer: int
    ungradable: int
    examples: list[str]  # gold answers found ungradable (first 20)


def gradable(gold: str) -> bool:
    """Would the verifier's rules grade against this gold answer?"""
    value = _strip_text(gold)
    if not value:
        return False
    if choice_letter(value) == value.strip("()"):
        return True
    if len(_PROSE.findall(_LATEX_COMMAND.sub(" ", value))) > MAX_WORDS:
        return False  # math-verify would read a sentence as a product of its letters
    if _is_word(value):
        return True
    # math-verify's timeout is signal.alarm: only the main thread (a worker process) can set it; in a
    # thread (a flow's in-process task) the parse runs without one
    main = threading.current_thread() is threading.main_thread()
    try:
        return bool(parse(f"${gold}$", _EXTRACTION, parsing_timeout=PARSE_TIMEOUT_S if main else None))
    except TimeoutException:  # a BaseException: an answer the parser cannot read in time is ungradable
        return False
    except Exception:  # a parser crash on this answer: not gradable by rule
        return False


class Gradable(MapStage[GradableConfig]):
    name = "gradable"
    Config = GradableConfig
    Details = GradableDetails

    def decide(self, batch: pl.DataFrame, config: GradableConfig, ctx: Context) -> Decision:
        passed = pl.col("domain").is_in(config.keep_domains).fill_null(False)
        answer = pl.col("answer").cast(pl.String)
        missing = answer.is_null() | (answer.str.strip_chars() == "")
        # each distinct answer is parsed once ("2" recurs thousands of times in a math set)
        distinct = batch.select(answer.filter(~missing).unique()).to_series().to_list()
        verdicts = {a: gradable(a) for a in distinct}
        ok = batch.select(answer.replace_strict(verdicts, default=None, return_dtype=pl.Boolean)).to_series()
        reason = batch.select(
            pl.when(passed)
            .then(None)
            .when(missing)
            .then(pl.lit("no_answer"))
            .when(~ok)
            .then(pl.lit("ungradable"))
        ).to_series()
        kept = batch.filter(reason.is_null())
        dropped = [
            dropped_with(batch.filter(reason == r), r, answer=pl.col("answer"), check="math_verify.parse")
            for r in ("no_answer", "ungradable")
        ]
        bad = batch.filter(reason == "ungradable")["answer"]
        tally = ((reason == "no_answer").sum(), bad.len(), bad.head(20).to_list())
        return Decision(kept, pl.concat(dropped), tally=tally)

    def summarize(self, tallies: list[Any], config: GradableConfig) -> GradableDetails:
        return GradableDetails(
            no_answer=sum(t[0] for t in tallies),
            ungradable=sum(t[1] for t in tallies),
            examples=[e for t in tallies for e in t[2]][:20],
        )
