"""`--teacher cpu|openai:MODEL`: every model a recipe names (teacher, judges, students) is replaced,
and nothing else in the recipe changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.recipe import RecipeError, cpu_teacher, load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "flows" / "recipes"


def recipe_with_every_model(tmp_path: Path, shared_data: Path) -> Path:
    r1 = {
        "model": "deepseek-reasoner",
        "n": 4,
        "max_tokens": 32000,
        "base_url": "https://api.example/v1",
        "prices": {"input_per_1m": 0.55, "output_per_1m": 2.19},
        "extra_body": {"reasoning_effort": "high"},
    }
    body = {
        "name": "every-model",
        "sources": [{"name": "gsm8k", "path": str(shared_data / "sources/gsm8k_train.jsonl"), "preset": "gsm8k_train"}],
        "stages": [
            {"stage": "decontaminate", "methods": ["ngram", "llm"], "benchmark_dir": str(shared_data / "benchmarks"),
             "judge": {"llm": {"model": "gpt-4o-mini", "n": 1}}},
            {"stage": "generate", "limit": 7, "llm": r1},
            {"stage": "verify", "judge": {"enabled": True, "llm": {"model": "gpt-4o-mini", "n": 1}}},
            {"stage": "pass_rate", "low": 0.0, "high": 0.5,
             "student": {"llm": {"backend": "vllm", "model": "agentica-org/DeepScaleR-1.5B-Preview", "n": 8}}},
            {"stage": "export"},
        ],
    }  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def models(recipe) -> list[dict]:
    out = []
    for name, config in recipe.steps():
        for holder in (config, getattr(config, "judge", None), getattr(config, "student", None)):
            llm = getattr(holder, "llm", None)
            if llm is not None:
                out.append({"stage": name, **llm.model_dump(mode="json")})
    return out


def test_cpu_replaces_every_model_and_keeps_the_sampling_plan(tmp_path, shared_data):
    recipe = load_recipe(recipe_with_every_model(tmp_path, shared_data))
    before = models(recipe)
    after = models(recipe.with_teacher("cpu"))
    assert [m["stage"] for m in after] == ["decontaminate", "generate", "verify", "pass_rate"]
    for old, new in zip(before, after, strict=True):
        assert {k: new[k] for k in cpu_teacher()} == cpu_teacher()
        assert new["n"] == old["n"], "k samples per problem is the recipe's, not the model's"
        assert new["prices"]["output_per_1m"] == 0 and new["extra_body"] == {} and new["base_url"] is None
    # everything else is untouched
    steps = dict(recipe.with_teacher("cpu").steps())
    assert steps["generate"].limit == 7 and steps["pass_rate"].high == 0.5
    assert steps["decontaminate"].methods == ["ngram", "llm"]


def test_openai_model_reads_the_endpoint_from_the_environment(tmp_path, shared_data):
    recipe = load_recipe(recipe_with_every_model(tmp_path, shared_data)).with_teacher("openai:my-r1")
    for m in models(recipe):
        assert (m["backend"], m["model"], m["base_url"]) == ("openai", "my-r1", None)
        assert (m["base_url_env"], m["api_key_env"]) == ("OPENAI_BASE_URL", "OPENAI_API_KEY")
    generate = dict(recipe.steps())["generate"].llm
    assert (generate.n, generate.max_tokens) == (4, 32000), "the recipe's sampling plan stays"


@pytest.mark.parametrize("spec", ["gpu", "openai:", "openai", "vllm:x"])
def test_a_bad_teacher_spec_is_a_clear_error(tmp_path, shared_data, spec):
    recipe = load_recipe(recipe_with_every_model(tmp_path, shared_data))
    with pytest.raises(RecipeError, match="--teacher"):
        recipe.with_teacher(spec)


def test_no_teacher_is_the_recipe_itself(shared_data):
    recipe = load_recipe(RECIPES / "quickstart.yaml", str(shared_data))
    assert recipe.with_teacher(None) is recipe
    assert recipe.with_teacher("cpu").model_dump() == recipe.model_dump(), (
        "quickstart already runs on the CPU"
    )


def test_cli_teacher_option_reaches_the_plan(shared_data):
    from typer.testing import CliRunner

    from flows.cli import app

    recipe = RECIPES / "s1.yaml"
    args = ["run", str(recipe), "--dry-run", "--data-dir", str(shared_data), "--teacher", "openai:my-teacher"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "my-teacher" in out and "gemini" not in out and "Qwen2.5-7B" not in out
    bad = CliRunner().invoke(app, [*args[:-1], "gpu"])
    assert bad.exit_code != 0 and "--teacher" in bad.output
