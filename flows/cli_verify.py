"""`longcot verify FILE --out DIR`: the verification stage alone, on any JSONL/Parquet of generations.

Flags map the file's fields onto generation rows. A response field holding a list (several samples
per problem, as in the Qwen2.5-Math and Sky-T1 files) is exploded into one row per sample, and a
label field holding a list of the same length (e.g. `score`) goes along: the report then shows how
often the verifier agrees with those labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.table import Table

from flows.cli_common import guarded
from flows.console import console
from stages.collect.readers import iter_records
from stages.records import to_json
from stages.text import uid_of

# Problem fields worth carrying into `meta` (LiveCodeBench functional tests need the starter code).
_META_FIELDS = ("starter_code", "fn_name", "entry_point")


# The layout of the labelled generation files in shared/data/generations (Qwen2.5-Math, Sky-T1):
# sampled outputs in the `code` list, per-sample labels in the `score` list.
LABELLED_GENERATION_FIELDS: dict[str, str | None] = {
    "problem": "question",
    "gold": "gt",
    "response": "code",
    "label": "score",
    "id": "idx",
    "reasoning": None,
    "tests": None,
    "entry_point": None,
    "source": None,
}


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Rows of a JSONL/JSON/Parquet/CSV file, and (line number, error) for rows that cannot be used
    (the collection readers decide; a blank or malformed line is reported, never skipped)."""
    records, bad = [], []
    for number, (record, error, detail) in enumerate(iter_records(path), 1):
        if error is None:
            records.append(record)
        else:
            bad.append((number, f"{error}: {detail}" if detail else error))
    return records, bad


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # AMC golds stored as 27.0
    return value if isinstance(value, str) else to_json(value)


def to_generation_rows(
    records: list[dict[str, Any]], fields: dict[str, str | None], source: str, domain: str | None
) -> pl.DataFrame:
    """Map records onto generation rows joined with their problem, one row per sample."""
    rows = []
    for record in records:
        problem = _text(record.get(fields["problem"]))
        uid = str(record[fields["id"]]) if fields["id"] else uid_of(problem or "")
        tests = record.get(fields["tests"]) if fields["tests"] else None
        if tests is not None and fields["entry_point"]:
            tests = {"test": tests, "entry_point": record.get(fields["entry_point"])}
        responses = record.get(fields["response"])
        labels = record.get(fields["label"]) if fields["label"] else None
        samples = responses if isinstance(responses, list) else [responses]
        for k, response in enumerate(samples):
            label = labels[k] if isinstance(labels, list) and k < len(labels) else labels
            rows.append(
                {
                    "uid": uid,
                    "sample": k,
                    "source": str(record.get(fields["source"]) or source) if fields["source"] else source,
                    "domain": domain or ("code" if fields["tests"] else "math"),
                    "problem": problem,
                    "answer": _text(record.get(fields["gold"])),
                    "tests": _text(tests),
                    "meta": to_json({k: record[k] for k in _META_FIELDS if k in record}),
                    "reasoning": _text(record.get(fields["reasoning"])) if fields["reasoning"] else None,
                    "response": _text(response),
                    "finish_reason": _text(record.get("finish_reason")),
                    "label": None if label is None else bool(label),
                }
            )
    schema = {
        c: pl.String
        for c in (
            "uid",
            "source",
            "domain",
            "problem",
            "answer",
            "tests",
            "meta",
            "reasoning",
            "response",
            "finish_reason",
        )
    }
    return pl.DataFrame(rows, schema={**schema, "sample": pl.Int32, "label": pl.Boolean})


def _check_fields(records: list[dict[str, Any]], fields: dict[str, str | None]) -> None:
    present = set().union(*(r.keys() for r in records)) if records else set()
    for flag, name in fields.items():
        if name and name not in present and flag != "id":
            raise typer.BadParameter(
                f"no row has field {name!r} (--{flag}-field); fields: {', '.join(sorted(present))}"
            )


def _summary(report: dict[str, Any], report_path: Path) -> None:
    details = report["details"]
    table = Table(title="verification", show_edge=False)
    for col in ("source", "rows", "kept", "verified", "correct", "accuracy"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, c in details["accuracy_by_source"].items():
        acc = "-" if c["accuracy"] is None else f"{c['accuracy']:.1%}"
        table.add_row(src, *(str(c.get(k, 0)) for k in ("rows", "kept", "verified", "correct")), acc)
    console.print(table)
    reasons = ", ".join(f"{k} {v}" for k, v in report["drop_reasons"].items()) or "none"
    console.print(
        f"rows {report['rows_in']:,} → kept {report['rows_kept']:,}, dropped {report['rows_dropped']:,} ({reasons})"
    )
    console.print(f"verifiers: {details['verifiers']}  sandbox: {details['sandbox_isolation'] or 'not used'}")
    label = details["label_agreement"]
    if label:
        console.print(f"agreement with labels: {label['agree']}/{label['rows']} = {label['rate']:.2%}")
    console.print(f"report: {report_path}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `verify` command to the longcot CLI."""

    @app.command("verify")
    @guarded
    def verify(
        file: Annotated[Path, typer.Argument(help="JSONL or Parquet of generations")],
        out: Annotated[Path, typer.Option("--out", help="output directory: kept/, dropped/, report.json")],
        problem_field: Annotated[str, typer.Option(help="problem text field")] = "problem",
        gold_field: Annotated[
            str | None,
            typer.Option(
                help="gold answer field (default: `answer` where rows have it; code rows need none)"
            ),
        ] = None,
        response_field: Annotated[
            str, typer.Option(help="response field; a list is one row per sample")
        ] = "response",
        reasoning_field: Annotated[
            str | None, typer.Option(help="separate reasoning field (DeepSeek)")
        ] = None,
        tests_field: Annotated[
            str | None, typer.Option(help="code tests field (makes rows code rows)")
        ] = None,
        entry_point_field: Annotated[str | None, typer.Option(help="HumanEval entry point field")] = None,
        label_field: Annotated[
            str | None, typer.Option(help="correctness label(s) to measure agreement with")
        ] = None,
        id_field: Annotated[
            str | None, typer.Option(help="problem id field (default: hash of the problem)")
        ] = None,
        source_field: Annotated[str | None, typer.Option(help="source name field")] = None,
        source: Annotated[str | None, typer.Option(help="source name (default: file name)")] = None,
        domain: Annotated[str | None, typer.Option(help="math|code|science|... for every row")] = None,
        workers: Annotated[int, typer.Option(min=0, help="worker processes (0 = one per core)")] = 0,
        drop_incorrect: Annotated[bool, typer.Option(help="drop wrong answers (reason 'incorrect')")] = False,
    ) -> None:
        """Verify a file of generations: quality filters, answer checks, a report."""
        from stages.verify import VerifyConfig, verify_rows

        if not file.is_file():
            raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
        if file.suffix not in (".jsonl", ".json", ".parquet"):
            raise typer.BadParameter("expected a .jsonl or .parquet file", param_hint="FILE")
        fields = {
            "problem": problem_field,
            "gold": gold_field,
            "response": response_field,
            "reasoning": reasoning_field,
            "tests": tests_field,
            "entry-point": entry_point_field,
            "label": label_field,
            "id": id_field,
            "source": source_field,
        }
        records, bad = read_records(file)
        if gold_field is None and any("answer" in r for r in records):
            fields["gold"] = "answer"
        _check_fields(
            records,
            {k: v for k, v in fields.items() if k in ("problem", "response")}
            | {k: v for k, v in fields.items() if v and k not in ("problem", "response")},
        )
        frame = to_generation_rows(
            records, {k.replace("-", "_"): v for k, v in fields.items()}, source or file.stem, domain
        )
        cfg = VerifyConfig(workers=workers, drop_incorrect=drop_incorrect)
        out.parent.mkdir(parents=True, exist_ok=True)
        if bad:
            unread = pl.DataFrame(
                {
                    "drop_reason": ["bad_input"] * len(bad),
                    "drop_detail": [to_json({"line": n, "error": e}) for n, e in bad],
                }
            )
            frame = pl.concat([frame, unread], how="diagonal_relaxed")
        with console.status(f"verifying {frame.height:,} rows from {file} …"):
            report = verify_rows([frame], cfg, out).model_dump(mode="json")
        _summary(report, out / "report.json")
