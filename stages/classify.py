"""Domain classification by an LLM from a taxonomy file: a `msc` column (or another name) on every row.

s1 (simplescaling/s1, data/featurization.py `do_domain_classification`) asked claude-3-5-sonnet-20241022
to classify each question into one of the Mathematics Subject Classification's top-level subjects
(data/msc.json; here ../shared/data/meta/s1_msc_domains.jsonl, the same 61 entries as JSON Lines):
its system prompt below, the user turn "## Question\\n{question}\\n\\n## Classification rubrics\\n{the
entries' `prompt` snippets}", and the label is the reply's last two characters when they are digits.
s1 retried a reply without a code until it got one; here a row whose reply has no known code gets a
null label (counted as `unlabelled` in the report; the export's budget balances it as "unknown"):
a label never drops a row. Problems are classified once (the LLM cache makes a repeat a cache hit).
Requests that fail for good (a prompt longer than a local model's context, say) are counted in the
report with the first error of each kind, apart from replies that carry no code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stages.llm import LLMClient, LLMConfig, Messages
from stages.stage import Context, Decision, Details, MapStage

SYSTEM_PROMPT = (  # s1's, verbatim (data/featurization.py)
    "You are a helpful assistant that classifies questions into different subjects based on the provided "
    "classification rubrics. You will be given a question and a list of subjects. You need to classify the "
    "question into one of the subjects. If the question has multiple subjects, you should classify the "
    "question into the most relevant subject. Explain your reasoning, and end your response on a new line "
    "with two-digit code of the subject that the question belongs to."
)


class ClassifyConfig(BaseModel):
    """`- stage: classify` in a recipe."""

    model_config = ConfigDict(extra="forbid")

    llm: LLMConfig = Field(description="the classifying model (s1: claude-3-5-sonnet-20241022)")
    taxonomy: Path = Field(description="JSONL of {code, title, prompt}: s1's MSC rubric")
    column: str = Field("msc", pattern=r"^[a-z_][a-z0-9_]*$", description="the label column added")
    field: str = Field("problem", description="the text column classified")


class ClassifyDetails(Details):
    model: str
    labelled: int
    unlabelled: int
    labels: dict[str, int]  # "code title" -> rows
    examples_unlabelled: list[str]  # the replies' tails
    failed: int = 0  # questions whose request failed for good (no reply: unlabelled)
    errors: list[str] = Field(default_factory=list)  # why: the first of each kind of failure


def load_taxonomy(path: Path) -> dict[str, dict[str, Any]]:
    """code -> entry; a missing file or an entry without code/prompt is a clear error."""
    if not path.is_file():
        raise FileNotFoundError(f"classify: no taxonomy file at {path}")
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    bad = [i for i, e in enumerate(entries) if not {"code", "prompt"} <= set(e)]
    if bad or not entries:
        raise ValueError(f"classify: {path}: every line needs `code` and `prompt` (bad lines: {bad[:5]})")
    return {str(e["code"]): e for e in entries}


def question_messages(question: str, rubric: str) -> Messages:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"## Question\n{question}\n\n## Classification rubrics\n{rubric}"},
    ]


def label_of(reply: str, codes: dict[str, Any]) -> str | None:
    """s1's rule: the last two characters, when they are digits (and, here, a known code)."""
    tail = reply.strip()[-2:]
    return tail if tail.isdigit() and tail in codes else None


@dataclass
class _State:
    client: LLMClient
    codes: dict[str, dict[str, Any]]
    rubric: str


class Classify(MapStage[ClassifyConfig]):
    """Labels every row; model calls run in the driver through one LLM client (its own concurrency)."""

    name = "classify"
    Config = ClassifyConfig
    Details = ClassifyDetails
    parallel = False

    def resources(self, config: ClassifyConfig) -> list[Path]:
        return [config.taxonomy]

    def check(self, config: ClassifyConfig) -> None:
        load_taxonomy(config.taxonomy)

    @contextmanager
    def open(self, config: ClassifyConfig, input_dir: Path | None) -> Iterator[_State]:
        codes = load_taxonomy(config.taxonomy)
        rubric = "\n\n".join(e["prompt"] for e in codes.values())
        with LLMClient(config.llm, label="classify") as client:
            yield _State(client, codes, rubric)

    def decide(self, batch: pl.DataFrame, config: ClassifyConfig, ctx: Context) -> Decision:
        state: _State = ctx.state
        if config.field not in batch.columns:
            raise ValueError(f"classify: input rows have no column {config.field!r}")
        texts = batch[config.field].cast(pl.String).fill_null("")
        unique = texts.unique(maintain_order=True).to_list()
        answers = state.client.replies([question_messages(t, state.rubric) for t in unique])
        labels = {t: label_of(reply, state.codes) for t, (reply, _) in zip(unique, answers, strict=True)}
        tails = [
            reply.strip()[-80:]
            for t, (reply, error) in zip(unique, answers, strict=True)
            if labels[t] is None and error is None
        ]
        errors = [error for _, error in answers if error is not None]
        column = texts.replace_strict(labels, default=None, return_dtype=pl.String).alias(config.column)
        kept = batch.with_columns(column)
        counts = Counter(kept[config.column].drop_nulls().to_list())
        return Decision(kept, batch.clear(), tally=(counts, kept[config.column].null_count(), tails, errors))

    def summarize(self, tallies: list[Any], config: ClassifyConfig) -> ClassifyDetails:
        codes = load_taxonomy(config.taxonomy)
        counts: Counter[str] = Counter()
        unlabelled, tails, errors = 0, [], []
        for c, n, t, e in tallies:
            counts.update(c)
            unlabelled += n
            tails.extend(t)
            errors.extend(e)
        first_of_kind: dict[str, str] = {}
        for error in errors:
            first_of_kind.setdefault(error.split(":", 1)[0], error)
        return ClassifyDetails(
            model=config.llm.model,
            labelled=sum(counts.values()),
            unlabelled=unlabelled,
            labels={f"{k} {codes[k].get('title', '')}".strip(): v for k, v in counts.most_common()},
            examples_unlabelled=tails[:10],
            failed=len(errors),
            errors=list(first_of_kind.values())[:5],
        )
