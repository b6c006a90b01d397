"""The published recipes (flows/recipes/): each one's cited parameters are the ones in effect, and each
runs end to end at a tiny limit with every model pointed at the fake OpenAI server (`--teacher
openai:MODEL`), leaving its SFT and/or RL sets in the published layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.recipe import load_recipe, validate_recipe
from stages.registry import run_stage
from tests.fake_openai import FakeOpenAI

RECIPES = Path(__file__).resolve().parents[1] / "flows" / "recipes"
PUBLISHED = ["openthoughts", "light_r1", "deepscaler", "skywork_or1", "s1"]
TABLE = re.compile(r"^#\s+(published|ours|unconfirmed):\s+(\S+)\s*=\s*(.+?)\s*(?:\|.*)?$")


def cited(recipe: str) -> list[tuple[str, str, Any]]:
    """(kind, path, value) of every `#   published|ours|unconfirmed: PATH = VALUE | why` line."""
    rows = []
    for line in (RECIPES / f"{recipe}.yaml").read_text().splitlines():
        if m := TABLE.match(line):
            rows.append((m.group(1), m.group(2), yaml.safe_load(m.group(3))))
    return rows


def resolve(steps: list, path: str) -> Any:
    """`stages.N.a.b` in the resolved stage configs (pydantic models, dicts, lists)."""
    head, index, *rest = path.split(".")
    assert head == "stages", f"only stages.* paths are cited: {path}"
    value: Any = steps[int(index)][1]
    for part in rest:
        if isinstance(value, list):
            value = value[int(part)]
        else:
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


@pytest.mark.parametrize("name", PUBLISHED)
def test_cited_parameters_are_the_ones_in_effect(name, shared_data):
    recipe = load_recipe(RECIPES / f"{name}.yaml", str(shared_data))
    validate_recipe(recipe)
    rows = cited(name)
    assert sum(kind == "published" for kind, _, _ in rows) >= 3, "each recipe cites its published numbers"
    steps = recipe.steps()
    for kind, path, value in rows:
        got = resolve(steps, path)
        got = got.model_dump(mode="json") if hasattr(got, "model_dump") else got
        assert got == value, f"{name}: {kind} {path} is {got!r} in effect, the comment says {value!r}"
    text = (RECIPES / f"{name}.yaml").read_text()
    assert "Where this project differs" in text and "Source" in text


def outputs(run_dir: Path) -> dict[str, int]:
    """Rows per exported set of every export stage: {"07-export/sft/train": rows, ...}."""
    found = {}
    for export in sorted(run_dir.glob("*-export")):
        for split in sorted(export.glob("*/*")):
            if split.parent.name in ("sft", "rl") and any(split.glob("*.parquet")):
                found[str(split.relative_to(run_dir))] = pl.read_parquet(split).height
    return found


STUDENT_MAX_TOKENS = 4096  # the recipes' students that must fail (s1) ask for at most this many


def oracle(recipe: Path, shared_data: Path, limit: int, tmp_path: Path):
    """A fake model that knows the gold answer of every collected math problem: right on even samples,
    wrong on odd ones (a pass rate of 1/2 at k >= 2), always wrong for a short-budget student (s1's
    students fail), and "11" (number theory) for a classification question."""
    collected = tmp_path / "oracle"
    config = load_recipe(recipe, str(shared_data)).collect_config(limit)
    run_stage("collect", None, config, collected)
    rows = pl.read_parquet(collected / "kept").filter(pl.col("answer").is_not_null())
    golds = dict(zip(rows["problem"], rows["answer"], strict=False))

    def answer(body: dict, prompt: str, sample: int) -> str:
        if "## Classification rubrics" in prompt:
            return "This is about integers.\n11"
        gold = next((a for p, a in golds.items() if p in prompt), None)
        student = (body.get("max_tokens") or 0) <= STUDENT_MAX_TOKENS
        right = gold is not None and sample % 2 == 0 and not student
        return f"The answer is \\boxed{{{gold if right else 'wrong'}}}."

    return answer


@pytest.mark.parametrize("name", PUBLISHED)
def test_recipe_runs_end_to_end_against_the_fake_server(name, shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the LLM cache lives in runs/cache/llm
    run_dir = tmp_path / "run"
    answer = oracle(RECIPES / f"{name}.yaml", shared_data, 4, tmp_path)
    with FakeOpenAI(request_answer_fn=answer) as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        args = ["run", str(RECIPES / f"{name}.yaml"), "--limit", "4", "--teacher", "openai:fake-r1"]
        result = CliRunner().invoke(app, [*args, "--data-dir", str(shared_data), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    sets = outputs(run_dir)
    filled = sorted(path.split("/")[0] + "/" + path.split("/")[1] for path, rows in sets.items() if rows)
    assert filled == EXPECTED[name], f"{name}: non-empty sets {filled}, all sets {sets}"
    for path in sets:
        frame = pl.read_parquet(run_dir / path)
        if "/sft/" in path and frame.height:
            assert {"messages"} <= set(frame.columns) or {"conversations"} <= set(frame.columns)
        if "/rl/" in path and frame.height:
            assert {"data_source", "prompt", "reward_model", "extra_info"} <= set(frame.columns)
    if name == "openthoughts":
        turn = pl.read_parquet(run_dir / "07-export/sft/train")["conversations"][0][1]["value"]
        assert turn.startswith("<|begin_of_thought|>") and turn.endswith("<|end_of_solution|>")
    if name == "skywork_or1":
        rates = pl.read_parquet(run_dir / "06-export/rl/train")["extra_info"].struct.field("pass_rate")
        assert rates.is_not_null().all() and rates.is_between(0.0625, 0.9375).all()


# the export stages of each recipe; each writes an SFT and an RL set, both non-empty when the oracle's
# teacher is right and students are right half the time (s1's short-budget students never)
EXPECTED = {
    "openthoughts": ["07-export/rl", "07-export/sft"],
    "light_r1": ["07-export/rl", "07-export/sft", "09-export/rl", "09-export/sft"],
    "deepscaler": ["06-export/rl", "06-export/sft"],
    "skywork_or1": ["06-export/rl", "06-export/sft"],
    "s1": ["09-export/rl", "09-export/sft"],
}
