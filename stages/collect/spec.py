"""Typed configuration of the collection stage: where each source is and how its fields map."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stages.collect.fields import parse_path

Domain = Literal["math", "code", "science", "puzzle", "general"]
Format = Literal["auto", "jsonl", "json", "parquet", "csv"]
MAPPINGS_FILE = Path(__file__).resolve().parents[2] / "data" / "mappings.yaml"
SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


@cache
def presets() -> dict[str, dict[str, Any]]:
    """Field mappings for known datasets, from data/mappings.yaml."""
    return yaml.safe_load(MAPPINGS_FILE.read_text())["presets"]


class FieldMap(Strict):
    """Where each problem-row field lives in a source row (a path like `prompt[0].value`, or null)."""

    problem: str = "problem"
    answer: str | None = "answer"
    solution: str | None = "solution"
    tests: str | None = "tests"
    domain: str | None = None

    @field_validator("*")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_path(value)
        return value

    def paths(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class HubSource(Strict):
    """A dataset for `datasets.load_dataset`: a Hub id, or a builder such as `json` with data_files."""

    dataset: str
    config: str | None = None
    split: str = "train"
    data_files: str | list[str] | None = None
    streaming: bool = True
    revision: str | None = None


class SourceSpec(Strict):
    """One problem source. Exactly one of `path` or `hf`; `preset` names a mapping in data/mappings.yaml."""

    name: str = Field(min_length=1, description="the `source` label of every row")
    path: Path | None = None
    hf: HubSource | None = None
    format: Format = "auto"
    preset: str | None = None
    fields: FieldMap = FieldMap()
    domain: Domain = "math"
    integer_answers: bool = Field(False, description="answers are integers: '025' -> '25' (AIME-like)")
    answer_from_solution: bool = Field(True, description="extract \\boxed{} / #### answers when missing")
    limit: int | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        name = data["preset"]
        if name not in presets():
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(presets()))}")
        preset = presets()[name]
        merged = {**preset, **data}
        merged["fields"] = {**preset.get("fields", {}), **data.get("fields", {})}
        return merged

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of `path` (a local file) or `hf` (a datasets source)")
        if self.path is not None and self.resolved_format() is None:
            raise ValueError(
                f"cannot tell the format of {self.path}; set `format` to one of jsonl, json, parquet, csv"
            )
        return self

    def resolved_format(self) -> str | None:
        if self.format != "auto" or self.path is None:
            return self.format
        return SUFFIX_FORMATS.get(self.path.suffix.lower())


class CollectConfig(Strict):
    sources: list[SourceSpec] = Field(min_length=1)
    max_problem_chars: int = Field(
        100_000, gt=0, description="longer problems are dropped (problem_too_long)"
    )
    drop_image_problems: bool = True
    drop_url_problems: bool = True
    batch_rows: int = Field(200_000, gt=0)


def file_sources(
    paths: list[Path], fields: FieldMap, domain: Domain = "math", **options: Any
) -> CollectConfig:
    """Collection of arbitrary files, one source each named by its file (what `longcot dedup` and
    `longcot decontaminate` read)."""
    return CollectConfig(
        sources=[SourceSpec(name=p.stem, path=p, fields=fields, domain=domain) for p in paths], **options
    )
