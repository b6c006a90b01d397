"""`longcot dedup INPUT... --out DIR`: exact, MinHash and embedding dedup on any JSONL/JSON/Parquet/CSV
files, with the same stages, shards and reports as a recipe run:

    OUT/00-collect/  OUT/01-exact_dedup/  OUT/02-minhash_dedup/  OUT/03-embedding_dedup/  OUT/dedup.html

Each stage reads the previous stage's kept rows, so the methods chain in the order given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli_common import guarded
from flows.console import console
from stages.dedup import exact, report

METHODS = ("exact", "minhash", "embedding")


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"a method is repeated in {text!r}")
    return methods


def stage_plan(methods: list[str], minhash_config: Any, embedding_config: Any) -> list[tuple[Any, Any]]:
    """(stage, config) for each method, in the order given. The stage modules are imported here, not
    through stages.registry: that imports every stage (math-verify, sympy, the LLM client), ~0.5 s
    of start-up a dedup command never uses."""
    from stages.dedup.embedding import EmbeddingDedup
    from stages.dedup.minhash import MinhashDedup

    table = {
        "exact": (exact.ExactDedup(), exact.ExactDedupConfig()),
        "minhash": (MinhashDedup(), minhash_config),
        "embedding": (EmbeddingDedup(), embedding_config),
    }
    return [table[m] for m in methods]


def run_dedup(
    inputs: list[Path],
    out: Path,
    methods: list[str],
    fields: Any,
    minhash_config: Any,
    embedding_config: Any,
    domain: str = "math",
    workers: int | None = None,
) -> list[tuple[Path, dict[str, Any]]]:
    """Collect the inputs into OUT/00-collect, then run each method on the previous kept rows.
    Returns (stage dir, report) of every stage, collect first."""
    from stages.collect import Collect, file_sources
    from stages.engine import LocalEngine
    from stages.runner import StepResult, run_steps

    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such input file: {', '.join(missing)}")

    def done(result: StepResult) -> None:
        if result.out_dir.name.endswith("collect") and result.report.rows_kept == 0:
            raise ValueError(
                f"no usable rows: is the text in field {fields.problem!r}? (see {result.out_dir / 'report.json'})"
            )
        console.print(f"[green]✓[/green] {result.out_dir.name} ({result.report.seconds:.1f}s)")

    steps = [
        (Collect(), file_sources(inputs, fields, domain)),
        *stage_plan(methods, minhash_config, embedding_config),
    ]
    with LocalEngine(workers) as engine, console.status("dedup …"):
        results = run_steps(steps, out, engine, first_index=0, listener=done)
    return [(r.out_dir, r.report.model_dump(mode="json")) for r in results]


def print_summary(reports: list[tuple[Path, dict[str, Any]]], html_path: Path) -> None:
    table = Table(title="dedup")
    for col in ("stage", "rows in", "removed", "clusters", "largest", "seconds", "report"):
        table.add_column(
            col,
            justify="right" if col in ("rows in", "removed", "clusters", "largest", "seconds") else "left",
        )
    collected = reports[0]
    table.add_row(
        collected[0].name,
        f"{collected[1]['rows_in']:,}",
        f"{collected[1]['rows_dropped']:,}",
        "",
        "",
        f"{collected[1]['seconds']:.1f}",
        str(collected[0] / "report.json"),
    )
    for row in report.summary_rows(reports[1:]):
        table.add_row(
            row["stage"],
            f"{row['rows_in']:,}",
            f"{row['removed']:,}",
            f"{row['clusters']:,}",
            str(row["largest"]),
            f"{row['seconds']:.1f}",
            row["report"],
        )
    console.print(table)
    final = reports[-1]
    console.print(
        f"kept {final[1]['rows_kept']:,} rows in {final[0] / 'kept'}; clusters side by side in {html_path}"
    )


def register(app: typer.Typer) -> None:
    """Add the `dedup` command to the longcot CLI."""

    @app.command("dedup")
    @guarded
    def dedup(
        inputs: Annotated[
            list[Path], typer.Argument(help="JSONL, JSON, Parquet or CSV files (one source each)")
        ],
        out: Annotated[Path, typer.Option("--out", help="output directory (stage dirs and dedup.html)")],
        method: Annotated[
            str, typer.Option(help="comma-separated, run in order: exact,minhash,embedding")
        ] = "exact,minhash",
        field: Annotated[
            str, typer.Option(help="field holding the text to compare (a path like prompt[0].value)")
        ] = "problem",
        answer_field: Annotated[
            str | None, typer.Option(help="gold answer field (the keep policy prefers rows with one)")
        ] = "answer",
        solution_field: Annotated[str | None, typer.Option(help="reference solution field")] = "solution",
        domain: Annotated[
            str, typer.Option(help="domain of every row: math|code|science|puzzle|general")
        ] = "math",
        threshold: Annotated[float, typer.Option(help="MinHash Jaccard threshold")] = 0.55,
        ngram: Annotated[int, typer.Option(help="MinHash shingle length")] = 5,
        unit: Annotated[
            str, typer.Option(help="MinHash shingles over word tokens or characters: word|char")
        ] = "word",
        num_perm: Annotated[int, typer.Option(help="MinHash permutations")] = 128,
        check: Annotated[str, typer.Option(help="MinHash candidate check: none|estimate|exact")] = "exact",
        embedding_threshold: Annotated[float, typer.Option(help="embedding cosine threshold")] = 0.9,
        model: Annotated[
            str, typer.Option(help="sentence-transformers model name or path")
        ] = "all-MiniLM-L6-v2",
        cache_dir: Annotated[Path | None, typer.Option(help="embedding cache directory")] = None,
        number_guard: Annotated[bool, typer.Option(help="keep rows whose numbers differ apart")] = True,
        pair_check: Annotated[
            bool, typer.Option(help="check each near-duplicate pair's texts before joining them")
        ] = True,
        normalize_math: Annotated[bool, typer.Option(help="math-aware text normalisation")] = True,
        workers: Annotated[
            int | None, typer.Option(min=1, help="worker processes (default: the cores)")
        ] = None,
    ) -> None:
        """Remove exact and near-duplicate problems from files; write kept/dropped shards and reports."""
        from stages.collect import FieldMap
        from stages.dedup.embedding import EmbeddingDedupConfig
        from stages.dedup.minhash import MinhashDedupConfig

        methods = parse_methods(method)
        fields = FieldMap(
            problem=field, answer=answer_field or None, solution=solution_field or None, tests=None
        )
        shared = {"number_guard": number_guard, "pair_check": pair_check, "normalize_math": normalize_math}
        minhash_config = MinhashDedupConfig(
            threshold=threshold, ngram=ngram, unit=unit, num_perm=num_perm, check=check, **shared
        )
        embedding_config = EmbeddingDedupConfig(
            threshold=embedding_threshold, model=model, cache_dir=cache_dir, **shared
        )
        reports = run_dedup(inputs, out, methods, fields, minhash_config, embedding_config, domain, workers)
        html_path = out / "dedup.html"
        html_path.write_text(report.html_page(report.render_html(reports[1:])))
        print_summary(reports, html_path)
