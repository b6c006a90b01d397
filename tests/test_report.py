"""The one-page run report: every section, plots inlined, nothing fetched from the network."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows.html_report import funnel_markdown
from flows.manifest import Manifest
from flows.recipe import load_recipe
from stages.export import ExportDetails
from stages.passrate import PassRateDetails
from stages.registry import read_report
from tests.test_push import build_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shared_data) -> Path:
    return build_run(tmp_path_factory.mktemp("report"), shared_data)


def test_report_is_self_contained_with_every_section(run_dir):
    page = (run_dir / "report.html").read_text()
    for heading in ("Funnel", "Per source", "Difficulty: pass rates", "Exported sets"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert page.count('src="data:image/png;base64,') >= 4, "funnel, reasons, pass rates, SFT lengths inline"
    assert not re.search(r'(src|href)="(https?:)?//', page), "no external resource"
    assert "<script src" not in page and "<link" not in page
    assert "estimate: ceil(chars / 4)" in page, "the token counts say what counted them"
    assert "too_easy" in page and "math_cot_100" in page
    assert "lighteval/MATH" not in page, "RL problems counted per source, not per verl reward key"


def test_pass_rate_and_export_reports_read_back_typed_into_the_page(run_dir, tmp_path):
    rates, export = read_report(run_dir / "01-pass_rate"), read_report(run_dir / "02-export")
    assert isinstance(rates.details, PassRateDetails) and isinstance(export.details, ExportDetails)
    assert (rates.details.problems.too_easy, rates.details.problems.kept, rates.details.rated) == (
        86,
        14,
        100,
    )
    page = (run_dir / "report.html").read_text()
    assert "total 100, kept 14, too_easy 86, too_hard 0" in page
    train = export.details.sets["sft"]["train"]
    assert train.rows > 0 and train.shards > 1
    assert f"<td>sft</td><td>train</td><td class=n>{train.rows}</td><td class=n>{train.shards}</td>" in page
    card = (run_dir / "card" / "README.md").read_text()
    assert f"| sft | train | {train.rows} | {train.shards} |" in card
    copy = shutil.copytree(run_dir / "01-pass_rate", tmp_path / "01-pass_rate")
    body = json.loads((copy / "report.json").read_text())
    body["details"]["rated_with"] = body["details"].pop("rated_by")
    (copy / "report.json").write_text(json.dumps(body))
    with pytest.raises(ValidationError, match="rated_by"):
        read_report(copy)


def test_funnel_markdown_for_the_prefect_artifact(run_dir):
    text = funnel_markdown(Manifest.load(run_dir).data)
    assert "| 01-pass_rate | 800 |" in text and "| 02-export |" in text and "too_easy" in text


def test_recipes_validate_pass_rate_and_export_options(tmp_path):
    recipe = {
        "name": "r",
        "sources": [{"name": "s", "path": "x.jsonl"}],
        "stages": [
            {"stage": "pass_rate", "low": 0.2, "high": 0.8, "student": {"llm": {"model": "m", "n": 8}}},
            {
                "stage": "export",
                "format": "sharegpt",
                "validation_fraction": 0.05,
                "select": {"policy": "random", "per_problem": 2, "budget": {"problems": 1000}},
            },
        ],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    steps = load_recipe(path).steps()
    assert steps[0][1].student.llm.n == 8 and steps[1][1].select.budget.problems == 1000
    recipe["stages"][0]["low"] = 0.9
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match="low"):
        load_recipe(path)
    quickstart = load_recipe(Path(__file__).parents[1] / "flows/recipes/quickstart.yaml")
    assert [k for k, _ in quickstart.steps()][-2:] == ["pass_rate", "export"]
