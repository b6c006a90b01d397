"""Recipes: YAML files validated by pydantic before any work starts.

name: quickstart
data_dir: ../shared/data          # `${data_dir}` in any string; env LONGCOT_DATA_DIR overrides
sources:
  - {name: gsm8k_train, path: "${data_dir}/sources/gsm8k_train.jsonl", preset: gsm8k_train}
collect: {max_problem_chars: 100000}
engine: {name: ray, address: auto}   # optional; `longcot run --engine/--workers/--address` override it
stages:
  - stage: exact_dedup
  - stage: export
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from stages.collect import CollectConfig, SourceError, SourceSpec, check_fields
from stages.registry import STAGES

DATA_DIR_ENV = "LONGCOT_DATA_DIR"
_VAR = re.compile(r"\$\{(\w+)\}")


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file, the field and what was expected."""


def _step_model(name: str) -> type[BaseModel]:
    return create_model(f"{name}_step", __base__=STAGES[name].Config, stage=(Literal[name], ...))  # type: ignore[call-overload]


StepSpec = Annotated[Union[tuple(_step_model(n) for n in STAGES)], Field(discriminator="stage")]  # noqa: UP007


class CollectOptions(BaseModel):
    """`collect:` block: CollectConfig without its sources (they are top level)."""

    model_config = ConfigDict(extra="forbid")
    max_problem_chars: int = CollectConfig.model_fields["max_problem_chars"].default
    drop_image_problems: bool = True
    drop_url_problems: bool = True
    batch_rows: int = Field(CollectConfig.model_fields["batch_rows"].default, gt=0)


class EngineOptions(BaseModel):
    """`engine:` block: where the map phases run (flows.build.make_engine)."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["local", "ray"] = "local"
    workers: int | None = Field(None, ge=1)
    address: str | None = Field(None, description='ray only: "auto", "HOST:PORT" or "ray://HOST:PORT"')

    def overridden(self, name: str | None, workers: int | None, address: str | None) -> EngineOptions:
        """The command line's choices over the recipe's; another engine drops the recipe's address."""
        chosen = name or self.name
        kept = self.address if chosen == self.name else None
        return EngineOptions(name=chosen, workers=workers or self.workers, address=address or kept)


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="run name: runs/<name>/")
    description: str = ""
    data_dir: str | None = None
    sources: list[SourceSpec] = Field(min_length=1)
    collect: CollectOptions = CollectOptions()
    engine: EngineOptions = EngineOptions()
    stages: list[StepSpec] = Field(default_factory=list)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _unique(self) -> Recipe:
        names = [s.name for s in self.sources]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self

    def collect_config(self, limit: int | None = None) -> CollectConfig:
        sources = [
            s if limit is None else s.model_copy(update={"limit": min(limit, s.limit or limit)})
            for s in self.sources
        ]
        return CollectConfig(sources=sources, **self.collect.model_dump())

    def with_teacher(self, spec: str | None) -> Recipe:
        """This recipe with every model it names (generate's teacher, verify's and decontaminate's
        judges, pass_rate's students, classify's labeller) replaced by `spec`: `cpu` or `openai:MODEL`
        (see teacher_llm)."""
        if spec is None:
            return self
        raw = self.model_dump(mode="json", exclude_unset=True)
        for step in raw.get("stages", []):
            for block in (step, step.get("judge"), step.get("student")):
                if isinstance(block, dict) and isinstance(block.get("llm"), dict):
                    block["llm"] = teacher_llm(spec, block["llm"])
        return Recipe.model_validate(raw)

    def steps(self) -> list[tuple[str, BaseModel]]:
        """(kind, stage config) per step, the config as the stage's own model (no `stage` key)."""
        return [
            (step.stage, STAGES[step.stage].Config.model_validate(step.model_dump(exclude={"stage"})))
            for step in self.stages
        ]


QUICKSTART = Path(__file__).resolve().parent / "recipes" / "quickstart.yaml"


@cache
def cpu_teacher() -> dict[str, Any]:
    """`--teacher cpu`: the quickstart's CPU model and its settings, read from the quickstart recipe
    itself (one place to tune them); `n` stays the recipe's own."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    llm = next(step["llm"] for step in raw["stages"] if step["stage"] == "generate")
    return {k: v for k, v in llm.items() if k != "n"}


# what the recipe's own model had that belongs to that model only, not to the replacement
_MODEL_OWN = ("base_url", "prices", "extra_body", "max_tokens_param", "mode", "vllm_engine_args")


def teacher_llm(spec: str, llm: dict[str, Any]) -> dict[str, Any]:
    """One `llm:` block with its model replaced: `cpu` (the quickstart's CPU model) or `openai:MODEL`
    (OPENAI_BASE_URL / OPENAI_API_KEY from the environment). The recipe's sampling plan stays (n,
    and for openai temperature, top_p and max_tokens); what was specific to the old model goes."""
    kept = {k: v for k, v in llm.items() if k not in _MODEL_OWN}
    if spec == "cpu":
        return kept | cpu_teacher()
    backend, _, model = spec.partition(":")
    if backend != "openai" or not model:
        raise RecipeError(f"--teacher: expected `cpu` or `openai:MODEL`, got {spec!r}")
    return kept | {
        "backend": "openai",
        "model": model,
        "base_url_env": "OPENAI_BASE_URL",
        "api_key_env": "OPENAI_API_KEY",
    }


def _substitute(value: Any, variables: dict[str, str], where: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(1) not in variables:
                raise RecipeError(
                    f"{where}: unknown variable ${{{m.group(1)}}} (known: {', '.join(variables)})"
                )
            return variables[m.group(1)]

        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    return value


def format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"recipe {path} is invalid:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        lines.append(f"  {loc}: {err['msg']}{shown}")
    return "\n".join(lines)


def load_recipe(path: Path, data_dir: str | None = None) -> Recipe:
    """Parse and validate a recipe; `data_dir` (or $LONGCOT_DATA_DIR) overrides the recipe's own."""
    if not path.is_file():
        raise RecipeError(f"recipe {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path}: expected a mapping at the top level, got {type(raw).__name__}")
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or raw.get("data_dir")
    if chosen is not None:
        raw["data_dir"] = str(chosen)
    variables = {"data_dir": str(chosen)} if chosen is not None else {}
    raw = _substitute(raw, variables, f"recipe {path}")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(format_errors(path, exc)) from None


def label_problems(steps: list[tuple[str, BaseModel]]) -> list[str]:
    """An export that balances its budget by a label column (s1: msc) needs a `classify` step that adds
    that column before it."""
    problems, labels = [], set()
    for index, (name, config) in enumerate(steps):
        if name == "classify":
            labels.add(config.column)  # type: ignore[attr-defined]
        budget = config.select.budget if name == "export" else None  # type: ignore[attr-defined]
        if budget is not None and budget.balance_by not in {"domain", "source", *labels}:
            problems.append(
                f"stages.{index} (export): select.budget.balance_by is {budget.balance_by!r}, a column no "
                f"earlier step adds: put a `classify` step with `column: {budget.balance_by}` before it"
            )
    return problems


def validate_recipe(recipe: Recipe) -> None:
    """Everything that can be checked before any work, all at once: missing source files, field paths
    that match nothing, and what each stage checks of its config (unknown benchmarks, a missing
    benchmark directory...). Raises one RecipeError listing every problem."""
    problems = [
        f"source {s.name}: no file at {s.path}" for s in recipe.sources if s.path and not s.path.is_file()
    ]
    if problems and recipe.data_dir:
        problems.append(f"(data_dir is {recipe.data_dir}; set --data-dir or ${DATA_DIR_ENV})")
    for spec in recipe.sources:
        if spec.path is None or spec.path.is_file():
            try:
                check_fields(spec)
            except (SourceError, ValueError, OSError) as exc:
                problems.append(str(exc))
    problems += label_problems(recipe.steps())
    for index, (name, config) in enumerate(recipe.steps()):
        try:
            STAGES[name].check(config)
        except (ValueError, OSError, KeyError) as exc:
            problems.append(f"stages.{index} ({name}): {exc}")
    if problems:
        raise RecipeError("recipe cannot run:\n  " + "\n  ".join(problems))
