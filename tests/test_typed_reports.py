"""Reports are pydantic models: a field renamed on one side (writer, reader, file) fails loudly
instead of rendering a blank."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from flows.html_report import collect_section
from stages.collect import CollectConfig, SourceSpec
from stages.collect import stage as collect_stage
from stages.registry import read_report, run_stage
from stages.reports.table import Table
from tests.conftest import write_jsonl

ROWS = [{"problem": "What is 1+1?", "answer": "2"}, {"problem": "Name a prime.", "answer": None}, {"x": 1}]


@pytest.fixture
def collected(tmp_path):
    config = CollectConfig(sources=[SourceSpec(name="tiny", path=write_jsonl(tmp_path / "t.jsonl", ROWS))])
    run_stage("collect", None, config, tmp_path / "01-collect")
    return tmp_path / "01-collect"


def test_reports_read_back_typed_and_render(collected):
    report = read_report(collected)
    assert report is not None
    counts = report.details.sources["tiny"]  # attributes, not string keys
    assert (counts.rows, counts.kept, counts.with_answer, counts.dropped) == (3, 2, 1, {"missing_problem": 1})
    html = collect_section(collected.parent, [{"stage": "collect", "dir": collected.name}])
    assert "<td>tiny</td><td class=n>3</td><td class=n>2</td><td class=n>1</td>" in html


def test_a_renamed_field_in_a_report_file_is_an_error_not_a_blank(collected):
    path = collected / "report.json"
    body = json.loads(path.read_text())
    source = body["details"]["sources"]["tiny"]
    source["answered"] = source.pop("with_answer")
    path.write_text(json.dumps(body))
    with pytest.raises(ValidationError, match="answered"):
        read_report(collected)


def test_a_renamed_field_in_the_model_fails_the_stage_that_writes_it(tmp_path, monkeypatch):
    class Renamed(collect_stage.Details):  # what a refactor that renames `with_answer` would leave
        location: str
        rows: int = 0
        kept: int = 0
        answered: int = 0
        answer_extracted: int = 0
        with_solution: int = 0
        dropped: dict[str, int] = {}  # noqa: RUF012 (pydantic copies defaults)

    monkeypatch.setattr(collect_stage, "SourceCounts", Renamed)
    config = CollectConfig(sources=[SourceSpec(name="tiny", path=write_jsonl(tmp_path / "t.jsonl", ROWS))])
    with pytest.raises(ValidationError, match="with_answer"):
        run_stage("collect", None, config, tmp_path / "01-collect")
    assert not (tmp_path / "01-collect").exists(), "nothing is published"


def test_one_table_renders_to_html_markdown_and_rich():
    table = Table(["source", "rows"], [["a|b", 1234], ["c", None]])
    assert "<td class=n>1,234</td>" in table.html() and "<td>–</td>" in table.html()
    assert table.markdown().splitlines()[2] == "| a\\|b | 1,234 |"
    rich = table.rich()
    assert [c.justify for c in rich.columns] == ["left", "right"]
