"""Input that never costs a good row: each bad line is one dropped row that says where it is and why,
and a field path that matches nothing fails before any work."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import polars as pl
import pytest

from stages.collect import CollectConfig, FieldPathError, SourceError, SourceSpec, check_fields
from tests.conftest import run_collect, write_jsonl

GOOD = [{"question": "What is 2+2?", "answer": "4"}, {"question": "What is 3+3?", "answer": "6"}]
FIELDS = {"problem": "question", "answer": "answer"}
GOOD_LINES = [json.dumps(r).encode() for r in GOOD]


def collect(tmp_path: Path, path: Path, **spec) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    source = SourceSpec.model_validate({"name": "in", "path": str(path), "fields": FIELDS, **spec})
    out = tmp_path / "collect"
    report = run_collect(CollectConfig(sources=[source]), out)
    read = lambda kind: pl.read_parquet(out / kind) if report[f"rows_{kind}"] else pl.DataFrame()  # noqa: E731
    return report, read("kept"), read("dropped")


def test_a_byte_order_mark_does_not_cost_the_first_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + b"\n".join(GOOD_LINES) + b"\n")
    report, kept, _ = collect(tmp_path, path)
    assert report["rows_dropped"] == 0
    assert kept["problem"].to_list() == [r["question"] for r in GOOD]


DEEP = b"[" * 200_000 + b"]" * 200_000
BAD_LINES = {
    # name: (line, drop reason, text the evidence shows)
    "deeply_nested_array": (DEEP, "too_deeply_nested", "[[[["),
    "deeply_nested_object": (b'{"question": ' + DEEP + b"}", "too_deeply_nested", '{"question": [[['),
    "truncated": (b'{"question": "What is', "malformed_json", "Unterminated string"),
    "invalid_utf8": (b'{"question": "\xff\xfe"}', "undecodable_line", "invalid start byte"),
    "nul_bytes": (b'{"question": "a\x00b"}', "malformed_json", "Invalid control character"),
    "only_nul_bytes": (b"\x00" * 64, "malformed_json", "Expecting value"),
    "huge_truncated": (b'{"question": "' + b"x" * 30_000_000, "malformed_json", "xxxx"),
    "array": (b'["What is 2+2?"]', "not_an_object", "list"),
    "number": (b"42", "not_an_object", "int"),
    "string": (b'"What is 2+2?"', "not_an_object", "str"),
    "problem_is_a_number": (b'{"question": 17}', "problem_not_text", "int"),
    "problem_is_an_object": (b'{"question": {"text": "hi"}}', "problem_not_text", "dict"),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_line_costs_only_itself_and_says_where_it_is(tmp_path, kind):
    line, reason, shown = BAD_LINES[kind]
    path = tmp_path / f"{kind}.jsonl"
    path.write_bytes(GOOD_LINES[0] + b"\n" + line + b"\n" + GOOD_LINES[1] + b"\n")
    report, kept, dropped = collect(tmp_path, path)
    assert report["rows_in"] == 3
    assert kept["answer"].to_list() == ["4", "6"], "every good row is kept"
    assert dropped["drop_reason"].to_list() == [reason]
    detail = json.loads(dropped["drop_detail"][0])
    assert detail["row"] == 1
    assert detail["evidence"].startswith(f"{path}:2: "), "the file and line number lead the evidence"
    assert shown in detail["evidence"]
    assert len(detail["evidence"]) < 3_000, "evidence is a preview, not the whole line"


def test_a_wrong_field_path_fails_before_any_work(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{**r, "id": i} for i, r in enumerate(GOOD)])
    spec = SourceSpec(name="typo", path=path, fields={"problem": "questoin"})
    with pytest.raises(FieldPathError) as caught:
        check_fields(spec)
    message = str(caught.value)
    assert str(path) in message and "'questoin'" in message
    assert "answer, id, question" in message and "did you mean 'question'" in message
    with pytest.raises(FieldPathError):
        run_collect(CollectConfig(sources=[spec]), tmp_path / "collect")
    assert not (tmp_path / "collect").exists(), "nothing was written"
    # a path that matches some rows is not an error: the others drop as missing_problem
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [GOOD[0], {"q": "What is 5+5?", "answer": "10"}])
    _, kept, dropped = collect(tmp_path, mixed)
    assert kept["answer"].to_list() == ["4"]
    assert dropped["drop_reason"].to_list() == ["missing_problem"]


def test_a_wrong_optional_or_nested_path_fails_too(tmp_path):
    rows = [{"prompt": [{"value": "Which is larger, 2 or 3?"}], "gold": "3"}]
    path = write_jsonl(tmp_path / "nested.jsonl", rows)
    check_fields(SourceSpec(name="ok", path=path, fields={"problem": "prompt[0].value", "answer": "gold"}))
    for fields, named in [
        ({"problem": "prompt[0].text", "answer": "gold"}, "field problem: 'prompt[0].text'"),
        ({"problem": "prompt[1].value"}, "field problem: 'prompt[1].value'"),
        ({"problem": "prompt[0].value", "answer": "gold_answer"}, "field answer: 'gold_answer'"),
    ]:
        with pytest.raises(FieldPathError, match=named.replace("[", r"\[")):
            check_fields(SourceSpec(name="bad", path=path, fields=fields))


def test_a_wrong_path_in_a_parquet_source_fails(tmp_path):
    pl.DataFrame(GOOD).write_parquet(tmp_path / "rows.parquet")
    spec = SourceSpec(name="pq", path=tmp_path / "rows.parquet", fields={"problem": "questoin"})
    with pytest.raises(FieldPathError, match=r"rows.parquet.*keys: answer, question"):
        check_fields(spec)


def test_default_optional_fields_need_not_exist_and_a_missing_file_is_named(tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl", [{"problem": "What is 2+2?"}])
    check_fields(SourceSpec(name="plain", path=path))  # no answer/solution/tests: fine
    with pytest.raises(SourceError, match=r"no file at .*absent.jsonl"):
        check_fields(SourceSpec(name="gone", path=tmp_path / "absent.jsonl"))
