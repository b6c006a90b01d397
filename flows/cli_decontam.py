"""`longcot decontaminate` (audit any dataset against the benchmark registry) and `longcot benchmarks`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from flows.cli_common import guarded
from flows.console import console


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def benchmark_table(details: dict[str, Any]) -> Table:
    table = Table(title=f"contamination: {details['rows_flagged']:,} of {details['rows_in']:,} rows flagged")
    for col, justify in (
        ("benchmark", "left"),
        ("items", "right"),
        ("items found", "right"),
        ("rows removed", "right"),
        ("by method", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, b in details["benchmarks"].items():
        style = "bold red" if b["items_found"] else None
        methods = ", ".join(f"{m} {c}" for m, c in b["rows_by_method"].items())
        table.add_row(
            name, f"{b['items']:,}", f"{b['items_found']:,}", f"{b['rows_removed']:,}", methods, style=style
        )
    return table


NEAR_SHOWN = 10
CLIP = 90


def _clip(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return flat[:CLIP] + ("…" if len(flat) > CLIP else "")


def near_miss_tables(details: dict[str, Any]) -> list[Table]:
    """Per method, the best-scoring pairs that were kept: both texts and the rule that kept each."""
    from stages.decontam.report import near_heading

    tables = []
    for method, near in details["near_misses"].items():
        if not near["examples"]:
            continue
        table = Table(title=Text(near_heading(method, near)), title_justify="left")
        for col in (near["metric"], "kept by", "training text", "benchmark item"):
            table.add_column(col, justify="right" if col == near["metric"] else "left", overflow="fold")
        for e in near["examples"][:NEAR_SHOWN]:
            table.add_row(  # Text: problem texts hold "[...]" that rich would read as markup
                f"{e['score']:.3f}",
                Text(f"{e['rule']}: {e['reason']}"),
                Text(f"row {e['row']}: {_clip(e['problem'])}"),
                Text(f"{e['benchmark']}/{e['benchmark_id']}: {_clip(e['benchmark_problem'])}"),
            )
        tables.append(table)
    return tables


def audit(
    inputs: list[Path],
    out: Path,
    config: Any,
    field: str = "problem",
    domain: str = "general",
    judge: Any = None,
) -> dict[str, Any]:
    """Collect the input files, decontaminate them, and write report.json, report.html, flagged.jsonl."""
    from stages.collect import CollectConfig, FieldMap, SourceSpec
    from stages.decontam import Decontaminate
    from stages.decontam.inputs import prepare_input
    from stages.decontam.report import render_page
    from stages.engine import LocalEngine
    from stages.registry import COLLECT
    from stages.runner import run_steps
    from stages.store import read_shards, write_json

    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for path in inputs:
        source, source_field = prepare_input(path, field, out / "_inputs")
        fields = FieldMap(problem=source_field, answer=None, solution=None, tests=None)
        sources.append(SourceSpec(name=path.stem, path=source, fields=fields, domain=domain))  # type: ignore[arg-type]
    collect_cfg = CollectConfig(sources=sources, drop_image_problems=False, drop_url_problems=False)
    stage_dir = out / "01-decontaminate"
    steps = [(COLLECT, collect_cfg), (Decontaminate(judge), config)]
    with LocalEngine() as engine:
        results = run_steps(steps, out, engine, first_index=0)
    collected, report = (r.report.model_dump(mode="json") for r in results)
    shutil.rmtree(out / "_inputs", ignore_errors=True)
    details = report["details"]
    write_json(
        out / "report.json",
        {
            **report,
            "inputs": [str(p) for p in inputs],
            "collect": {
                "rows_in": collected["rows_in"],
                "rows_dropped": collected["rows_dropped"],
                "drop_reasons": collected["drop_reasons"],
            },
        },
    )
    (out / "report.html").write_text(
        render_page(details, f"Contamination audit: {', '.join(p.name for p in inputs)}")
    )
    flagged = [b for b in read_shards(stage_dir / "dropped")]
    with (out / "flagged.jsonl").open("w") as f:
        for batch in flagged:
            batch.write_ndjson(f)
    return report


def register(app: typer.Typer) -> None:
    """Add `decontaminate` and `benchmarks` to the `longcot` app."""

    @app.command("decontaminate")
    @guarded
    def decontaminate(
        inputs: Annotated[list[Path], typer.Argument(help="JSONL / JSON / Parquet / CSV files to audit")],
        out: Annotated[Path, typer.Option("--out", help="output directory")],
        benchmarks: Annotated[
            str | None, typer.Option(help="comma-separated registry names (default: all)")
        ] = None,
        benchmark_dir: Annotated[
            Path | None,
            typer.Option(help="local benchmark JSONL files (else $LONGCOT_BENCHMARK_DIR, else the Hub)"),
        ] = None,
        methods: Annotated[str, typer.Option(help="ngram, embedding, llm (comma-separated)")] = "ngram",
        field: Annotated[
            str,
            typer.Option(
                help="problem field(s), first present wins; else the user turn of messages/conversations"
            ),
        ] = "problem",
        domain: Annotated[
            str, typer.Option(help="domain of the input rows (code: compare statements)")
        ] = "general",
        benchmark_file: Annotated[
            list[str] | None, typer.Option(help="extra benchmark NAME=PATH[:FIELD], repeatable")
        ] = None,
        ngram: Annotated[int | None, typer.Option(help="words per n-gram (default 6)")] = None,
        min_coverage: Annotated[
            float | None, typer.Option(help="n-gram coverage threshold (default 0.3)")
        ] = None,
        threshold: Annotated[
            float | None, typer.Option(help="embedding cosine threshold (default 0.85)")
        ] = None,
        judge: Annotated[
            str | None, typer.Option(help="LLM judge function 'module:function' (for --methods llm)")
        ] = None,
    ) -> None:
        """Audit datasets for benchmark contamination: writes clean rows, flagged rows with evidence,
        report.json and report.html, and prints the per-benchmark table."""
        from stages.decontam import DecontamConfig
        from stages.decontam.registry import parse_benchmark_file

        ngram_cfg = {k: v for k, v in {"n": ngram, "min_coverage": min_coverage}.items() if v is not None}
        config = DecontamConfig(
            methods=_names(methods),  # type: ignore[arg-type]
            benchmarks=_names(benchmarks),
            benchmark_dir=benchmark_dir,
            extra_benchmarks=[parse_benchmark_file(t) for t in benchmark_file or []],
            field="problem",
            ngram=ngram_cfg,  # type: ignore[arg-type]
            embedding={"threshold": threshold} if threshold is not None else {},  # type: ignore[arg-type]
            judge={"function": judge},  # type: ignore[arg-type]
        )
        chat = None
        if "llm" in config.methods:
            from stages.decontam.judge import resolve_backend

            chat = resolve_backend(config.judge)
        with console.status("decontaminating …"):
            report = audit(inputs, out, config, field=field, domain=domain, judge=chat)
        details = report["details"]
        console.print(benchmark_table(details))
        for table in near_miss_tables(details):
            console.print(table)
        missing = details.get("ngram_index", {}).get("statistics", {}).get("missing", {})
        if missing:
            console.print(
                f"[yellow]boilerplate statistics without {len(missing)} registry benchmark(s) that could not "
                f"be loaded: {', '.join(missing)} (report.json: ngram_index.statistics.missing)[/yellow]"
            )
        console.print(
            f"clean rows: {out / '01-decontaminate' / 'kept'}  flagged: {out / 'flagged.jsonl'}  "
            f"report: {out / 'report.html'}",
            highlight=False,
        )

    @app.command("benchmarks")
    @guarded
    def benchmarks_cmd(
        benchmark_dir: Annotated[
            Path | None, typer.Option(help="local benchmark JSONL files (else $LONGCOT_BENCHMARK_DIR)")
        ] = None,
        load: Annotated[
            bool, typer.Option("--load", help="without a local directory, load from the Hub to count rows")
        ] = False,
    ) -> None:
        """List the benchmark registry: names, row counts and where each was loaded from."""
        from stages.decontam.registry import load_entry, registry, resolve_dir

        directory = resolve_dir(benchmark_dir)
        table = Table(
            title="benchmark registry" + (f" ({directory})" if directory else " (Hugging Face Hub)")
        )
        for col in ("name", "title", "domain", "rows", "loaded from"):
            table.add_column(col, justify="right" if col == "rows" else "left")
        for entry in registry().values():
            if directory is not None or load:
                _, origin = load_entry(entry, directory)
                rows, where = f"{origin['rows']:,}", origin["location"]
            else:
                rows, where = "-", f"hf://{entry.hf.dataset}" if entry.hf else "(local only)"
            table.add_row(entry.name, entry.title, entry.domain, rows, where)
        console.print(table)
