"""The verify stage: quality filters, then a verdict per generation row from the right verifier.

Rows in are generation rows joined with their problem (problem, answer = gold, domain, tests, source).
Rows out keep every input column and add `correct`, `verifier`, `verdict_detail` (JSON) and
`extracted`. What is dropped and why:
- a quality filter fails (quality.py): its reason (truncated, repetition, ...);
- the checker itself failed (timeout, worker crash, unreadable tests): `verifier_error`;
- nothing can check the row (no gold, no tests, judge off): `unverifiable` (or kept, see config);
- `drop_incorrect` is set and the answer is wrong: `incorrect`.
Wrong answers are kept by default with correct=false, so pass rates can be computed downstream.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages.llm import Ask
from stages.records import to_json
from stages.store import StageWriter, read_shards
from stages.verify.code_check import check_code, parse_tests, starter_fn_name
from stages.verify.extract import extract_code, final_answer, split_response
from stages.verify.judge import JudgeConfig, configured_judge, judge_messages, run_judge
from stages.verify.mathcheck import check_math
from stages.verify.pool import Failure, WorkerPool
from stages.verify.quality import QualityConfig, quality_verdicts
from stages.verify.sandbox import WEAK, isolation

VERDICT_COLUMNS = ("correct", "verifier", "verdict_detail", "extracted")
_INPUT_DEFAULTS: dict[str, pl.DataType] = {
    "uid": pl.String(),
    "sample": pl.Int32(),
    "problem": pl.String(),
    "answer": pl.String(),
    "domain": pl.String(),
    "tests": pl.String(),
    "source": pl.String(),
    "meta": pl.String(),
    "reasoning": pl.String(),
    "response": pl.String(),
    "finish_reason": pl.String(),
    "completion_tokens": pl.Int64(),
    "drop_reason": pl.String(),  # set by a reader for rows it could not read; kept as the verdict
    "drop_detail": pl.String(),
}


class CodeConfig(BaseModel):
    """Sandbox limits per test run, and whether weak isolation is acceptable."""

    model_config = ConfigDict(extra="forbid")

    wall_s: float = 6.0
    memory_mb: int = 2048
    file_mb: int = 64
    nproc: int = 64
    output_bytes: int = 4 << 20
    stop_on_first_failure: bool = True
    require_isolation: bool = False  # refuse to run code when only rlimits are available


class VerifyConfig(BaseModel):
    """Configuration of the verify stage (embedded in recipes as `verify:`)."""

    model_config = ConfigDict(extra="forbid")

    workers: int = 0  # worker processes; 0 = one per CPU core
    math_timeout_s: int = 5  # math-verify's own per-parse / per-comparison timeout
    hard_timeout_s: float = 60.0  # a math worker silent this long is killed (C code ignores alarms)
    integer_sources: list[str] = Field(default_factory=lambda: ["aime"])  # regexes on `source`
    choice_sources: list[str] = Field(default_factory=lambda: ["gpqa"])
    accept_last_number: bool = True  # no box / "answer:" line: take the last number of the answer part
    drop_incorrect: bool = False
    unverifiable: Literal["drop", "keep"] = "drop"
    quality: QualityConfig = Field(default_factory=QualityConfig)
    code: CodeConfig = Field(default_factory=CodeConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)


def _math_item(item: tuple[str, str | None, str, int]) -> dict[str, Any]:
    return check_math(*item)


def _mode(source: str | None, cfg: VerifyConfig) -> str:
    source = source or ""
    if any(re.search(p, source, re.IGNORECASE) for p in cfg.integer_sources):
        return "integer"
    if any(re.search(p, source, re.IGNORECASE) for p in cfg.choice_sources):
        return "choice"
    return "auto"


def _fn_name(meta: str | None) -> str | None:
    """LiveCodeBench functional tests name their method only in the starter code (kept in meta)."""
    try:
        fields = json.loads(meta) if meta else {}
    except json.JSONDecodeError:
        return None
    if not isinstance(fields, dict):
        return None
    return fields.get("fn_name") or starter_fn_name(fields.get("starter_code"))


def _prepare(df: pl.DataFrame, cfg: VerifyConfig) -> pl.DataFrame:
    """Fill missing input columns, split thinking from answer, extract the answer or program."""
    df = df.with_columns(
        pl.lit(None, dtype=t).alias(c) for c, t in _INPUT_DEFAULTS.items() if c not in df.columns
    )
    splits = [split_response(r, t) for r, t in zip(df["response"], df["reasoning"], strict=True)]
    found = [final_answer(s.answer) for s in splits]
    programs = [extract_code(s.answer) for s in splits]
    is_code = (df["domain"] == "code").fill_null(False).to_list()
    extracted = [
        prog if code else (ans if cfg.accept_last_number or how != "last_number" else None)
        for (ans, how), prog, code in zip(found, programs, is_code, strict=True)
    ]
    return df.with_columns(
        pl.Series("_thinking", [s.reasoning for s in splits], pl.String),
        pl.Series("_answer", [s.answer for s in splits], pl.String),
        pl.Series("_format", [s.format for s in splits], pl.String),
        pl.Series("_complete", [s.complete for s in splits], pl.Boolean),
        pl.Series(
            "_method",
            ["code_block" if c else how for (_, how), c in zip(found, is_code, strict=True)],
            pl.String,
        ),
        pl.Series("_has_program", [p is not None for p in programs], pl.Boolean),
        pl.Series("extracted", extracted, pl.String),
    )


class _Verdicts:
    """Per-row verdicts of one batch, filled by the verifiers, then turned into columns."""

    def __init__(self, n: int):
        self.correct: list[bool | None] = [None] * n
        self.verifier: list[str | None] = [None] * n
        self.detail: list[dict[str, Any] | None] = [None] * n
        self.drop: list[str | None] = [None] * n

    def set(self, i: int, correct: bool | None, verifier: str, detail: dict, drop: str | None = None) -> None:
        self.correct[i], self.verifier[i], self.detail[i], self.drop[i] = correct, verifier, detail, drop


def _run_math(
    rows: list[dict], idx: list[int], v: _Verdicts, cfg: VerifyConfig, pool: WorkerPool
) -> list[int]:
    """Math verdicts; returns the rows that want the judge's opinion (parse failures)."""
    items = [
        (rows[i]["answer"], rows[i]["extracted"], _mode(rows[i]["source"], cfg), cfg.math_timeout_s)
        for i in idx
    ]
    results = pool.map(_math_item, items, cfg.hard_timeout_s)
    for_judge = []
    for i, res in zip(idx, results, strict=True):
        if isinstance(res, Failure):
            v.set(i, None, "math", {"error": res.reason, "detail": res.detail}, "verifier_error")
            continue
        res["extraction"] = rows[i]["_method"]
        if res["error"]:
            v.set(i, None, "math", res, "verifier_error")
        else:
            v.set(i, res["correct"], "math", res)
        if cfg.judge.enabled and cfg.judge.on_parse_failure and (res["error"] or res.get("unparsed")):
            for_judge.append(i)
    return for_judge


def _run_code(rows: list[dict], idx: list[int], v: _Verdicts, cfg: VerifyConfig, pool: WorkerPool) -> None:
    limits = cfg.code.model_dump(exclude={"stop_on_first_failure", "require_isolation"})
    items = [
        {
            "code": rows[i]["extracted"],
            "tests": rows[i]["tests"],
            "fn_name": _fn_name(rows[i]["meta"]),
            "limits": limits,
            "stop_on_first_failure": cfg.code.stop_on_first_failure,
        }
        for i in idx
    ]

    def deadline(item: dict) -> float:
        try:
            n = len(parse_tests(item["tests"], item["fn_name"]).cases) or 1
        except (ValueError, TypeError):
            n = 1
        return n * (cfg.code.wall_s + 5) + 30

    for i, res in zip(idx, pool.map(check_code, items, deadline), strict=True):
        if isinstance(res, Failure):
            v.set(i, None, "code", {"error": res.reason, "detail": res.detail}, "verifier_error")
        elif res["status"] == "bad_tests":
            v.set(i, None, "code", res, "verifier_error")
        else:
            v.set(i, res["correct"], "code", res)


def _run_judge(rows: list[dict], idx: list[int], v: _Verdicts, cfg: VerifyConfig, judge: Ask | None) -> None:
    conversations = [
        judge_messages(rows[i]["problem"], rows[i]["answer"], rows[i]["response"], cfg.judge) for i in idx
    ]
    for i, verdict in zip(idx, run_judge(judge, conversations, cfg.judge), strict=True):
        decided = verdict["verdict"] in ("correct", "incorrect")
        rule = v.detail[i]
        if rule is not None:  # a second opinion on a math row whose parser failed
            detail = {**rule, "judge": verdict}
            if decided:
                v.set(i, verdict["verdict"] == "correct", "math+judge", detail)
            else:
                v.set(i, v.correct[i], "math", detail, v.drop[i])
        elif decided:
            v.set(i, verdict["verdict"] == "correct", "judge", {"judge": verdict})
        else:
            reason = "unverifiable" if verdict["verdict"] == "unsure" else "verifier_error"
            v.set(i, None, "judge", {"judge": verdict}, reason)


def verify_frame(
    df: pl.DataFrame, cfg: VerifyConfig, pool: WorkerPool, judge: Ask | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, dropped) for one batch of generation rows; every row lands in exactly one."""
    df = quality_verdicts(_prepare(df, cfg), cfg.quality)
    rows = df.select(
        "answer", "extracted", "source", "tests", "meta", "problem", "response", "domain", "_method"
    ).to_dicts()
    v = _Verdicts(df.height)
    passed = df["drop_reason"].is_null().to_list()
    is_code = [p and r["domain"] == "code" for p, r in zip(passed, rows, strict=True)]
    code_idx = [i for i, c in enumerate(is_code) if c and rows[i]["tests"] is not None]
    math_idx = [i for i, p in enumerate(passed) if p and not is_code[i] and rows[i]["answer"] is not None]
    checked = set(code_idx) | set(math_idx)
    rest = [i for i, p in enumerate(passed) if p and i not in checked]
    for_judge = _run_math(rows, math_idx, v, cfg, pool) if math_idx else []
    if code_idx:
        _run_code(rows, code_idx, v, cfg, pool)
    if cfg.judge.enabled and cfg.judge.on_no_gold:
        for_judge += rest
    else:
        for i in rest:
            reason = "unverifiable" if cfg.unverifiable == "drop" else None
            v.set(
                i, None, "none", {"domain": rows[i]["domain"], "has_gold": False, "has_tests": False}, reason
            )
    if for_judge:
        _run_judge(rows, for_judge, v, cfg, judge)
    if cfg.drop_incorrect:
        for i, ok in enumerate(v.correct):
            if ok is False and v.drop[i] is None:
                v.drop[i] = "incorrect"
    df = df.with_columns(
        pl.Series("correct", v.correct, pl.Boolean),
        pl.Series("verifier", v.verifier, pl.String),
        pl.Series("verdict_detail", [None if d is None else to_json(d) for d in v.detail], pl.String),
        pl.Series("_drop", v.drop, pl.String),
    )
    df = df.with_columns(
        drop_reason=pl.coalesce("drop_reason", "_drop"),
        drop_detail=pl.coalesce("drop_detail", "verdict_detail"),
    )
    scratch = [c for c in df.columns if c.startswith("_")]
    dropped = df.filter(pl.col("drop_reason").is_not_null()).drop(scratch)
    kept = df.filter(pl.col("drop_reason").is_null()).drop([*scratch, "drop_reason", "drop_detail"])
    return kept, dropped


class _Tally:
    """Report numbers accumulated over batches: accuracy per source, verifiers, label agreement."""

    def __init__(self) -> None:
        self.by_source: dict[str, Counter] = {}
        self.verifiers: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.isolation: Counter[str] = Counter()
        self.label = Counter()
        self.judge_vs_rule = Counter()
        self.disagreements: list[dict[str, Any]] = []

    def add(self, kept: pl.DataFrame, dropped: pl.DataFrame) -> None:
        for frame, was_kept in ((kept, True), (dropped, False)):
            for row in frame.select(
                "uid",
                "sample",
                "source",
                "correct",
                "verifier",
                "verdict_detail",
                "extracted",
                "answer",
                *(["label"] if "label" in frame.columns else []),
            ).iter_rows(named=True):
                self._add_row(row, was_kept)

    def _add_row(self, row: dict[str, Any], kept: bool) -> None:
        counts = self.by_source.setdefault(row["source"] or "?", Counter())
        counts["rows"] += 1
        counts["kept"] += kept
        counts["verified"] += row["correct"] is not None
        counts["correct"] += row["correct"] is True
        if row["verifier"]:
            self.verifiers[row["verifier"]] += 1
        detail = json.loads(row["verdict_detail"]) if row["verdict_detail"] else {}
        if "method" in detail:
            self.methods[detail["method"]] += 1
        if detail.get("isolation"):
            self.isolation[detail["isolation"]] += 1
        judge = detail.get("judge")
        if judge and "correct" in detail and judge["verdict"] in ("correct", "incorrect"):
            self.judge_vs_rule[
                "agree" if (judge["verdict"] == "correct") == detail["correct"] else "disagree"
            ] += 1
        if row.get("label") is not None:
            ours = row["correct"] is True
            self.label["rows"] += 1
            self.label["agree"] += ours == bool(row["label"])
            if ours != bool(row["label"]) and len(self.disagreements) < 200:
                self.disagreements.append(
                    {
                        k: row[k]
                        for k in ("uid", "sample", "source", "answer", "extracted", "label", "correct")
                    }
                    | {"kept": kept, "method": detail.get("method")}
                )

    def details(self) -> dict[str, Any]:
        accuracy = {
            src: {**c, "accuracy": round(c["correct"] / c["verified"], 4) if c["verified"] else None}
            for src, c in sorted(self.by_source.items())
        }
        label = dict(self.label)
        if label:
            label["rate"] = round(label["agree"] / label["rows"], 4)
            label["disagreements"] = self.disagreements
        return {
            "accuracy_by_source": accuracy,
            "verifiers": dict(self.verifiers),
            "math_methods": dict(self.methods),
            "sandbox_isolation": dict(self.isolation) or None,
            "label_agreement": label or None,
            "judge_rule_agreement": dict(self.judge_vs_rule) or None,
        }


def verify_frames(
    frames: Iterable[pl.DataFrame], cfg: VerifyConfig, out: StageWriter, judge: Ask | None = None
) -> dict[str, Any]:
    """Verify batches of rows into `out`; returns the report details (the caller finishes `out`)."""
    judge = configured_judge(cfg.judge, judge)
    if cfg.code.require_isolation and isolation()[0] == WEAK:
        raise RuntimeError(
            "verify.code.require_isolation is set but only rlimits are available here (not root?)"
        )
    tally = _Tally()
    workers = cfg.workers or os.cpu_count() or 1
    with WorkerPool(workers) as pool:
        for frame in frames:
            out.count_in(frame.height)
            kept, dropped = verify_frame(frame, cfg, pool, judge)
            out.keep(kept)
            out.drop(dropped)
            tally.add(kept, dropped)
        replaced = pool.replaced
    return {**tally.details(), "workers": workers, "workers_replaced": replaced}


def run(input_dir: Path, cfg: VerifyConfig, out: StageWriter, judge: Ask | None = None) -> dict[str, Any]:
    """The stage entry point: verify the shards in `input_dir` into `out`."""
    return verify_frames(read_shards(input_dir), cfg, out, judge)
