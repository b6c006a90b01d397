"""Recipe validation fails before any work, naming the file, the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.recipe import RecipeError, load_recipe, validate_recipe

REPO = Path(__file__).resolve().parents[1]


def recipe_file(tmp_path: Path, body: dict | str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return path


BASE = {"name": "t", "sources": [{"name": "s", "path": "x.jsonl"}], "stages": [{"stage": "exact_dedup"}]}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"stages": [{"stage": "nope"}]}, r"stages\.0: .*'nope'.*'exact_dedup'"),
        ({"stages": [{"stage": "export", "splt": "x"}]}, r"stages\.0\.export\.splt: Extra inputs"),
        ({"sources": []}, r"sources: List should have at least 1 item"),
        (
            {"sources": [{"name": "s", "path": "x.jsonl", "limit": 0}]},
            r"sources\.0\.limit: .*greater than 0 \(got 0\)",
        ),
        (
            {"sources": [{"name": "s", "path": "x.jsonl", "preset": "zz"}]},
            r"sources\.0: .*unknown preset 'zz'",
        ),
        (
            {"sources": [{"name": "s", "path": "x.jsonl", "domain": "art"}]},
            r"sources\.0\.domain: Input should be 'math'",
        ),
        ({"sources": [{"name": "s"}]}, r"exactly one of `path`"),
        ({"name": "has space"}, r"name: String should match pattern"),
        ({"sources": [{"name": "s", "path": "a.jsonl"}, {"name": "s", "path": "b.jsonl"}]}, r"repeated: s"),
    ],
)
def test_bad_recipes_name_file_and_field(tmp_path, change, expected):
    path = recipe_file(tmp_path, {**BASE, **change})
    with pytest.raises(RecipeError, match=expected) as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_yaml_and_variable_errors(tmp_path):
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(recipe_file(tmp_path, "name: [unclosed"))
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(recipe_file(tmp_path, "- a list"))
    with pytest.raises(RecipeError, match=r"unknown variable \$\{nope\}"):
        load_recipe(recipe_file(tmp_path, {**BASE, "sources": [{"name": "s", "path": "${nope}/x.jsonl"}]}))
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "missing.yaml")


def test_data_dir_substitution_and_missing_inputs(tmp_path, monkeypatch):
    body = {**BASE, "data_dir": "/nowhere", "sources": [{"name": "s", "path": "${data_dir}/x.jsonl"}]}
    path = recipe_file(tmp_path, body)
    assert str(load_recipe(path).sources[0].path) == "/nowhere/x.jsonl"
    monkeypatch.setenv("LONGCOT_DATA_DIR", str(tmp_path))
    assert load_recipe(path).sources[0].path == tmp_path / "x.jsonl"
    recipe = load_recipe(path, data_dir="/elsewhere")
    assert str(recipe.sources[0].path) == "/elsewhere/x.jsonl"
    with pytest.raises(
        RecipeError, match=r"(?s)source s: no file at /elsewhere/x.jsonl.*data_dir is /elsewhere"
    ):
        validate_recipe(recipe)


def test_shipped_recipes_are_valid():
    for path in sorted((REPO / "flows" / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        assert recipe.steps(), path
