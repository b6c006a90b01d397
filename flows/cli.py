"""`longcot`: run a recipe, summarise or inspect a run, and the standalone stage commands."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from flows import cli_decontam, cli_dedup, cli_generate, cli_push, cli_verify
from flows.cli_common import guarded, state
from flows.console import console, quiet_prefect, run_log, say

app = typer.Typer(
    name="longcot",
    help="Build long chain-of-thought training sets from a recipe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks and Prefect logs")] = False,
) -> None:
    state["debug"] = debug
    # Prefect logs a failed flow's traceback at ERROR: the one-line error is ours, the rest --debug's
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if debug else "CRITICAL")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a first run migrates a fresh local database, which can outlast Prefect's 20 s default
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if os.environ.get("PREFECT_HOME"):  # its SQLite database cannot create missing parents
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)


@app.command()
@guarded
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. flows/recipes/quickstart.yaml")],
    run_dir: Annotated[Path | None, typer.Option(help="run directory (default runs/<recipe name>)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="read at most N rows per source")] = None,
    data_dir: Annotated[str | None, typer.Option(help="replaces ${data_dir} in the recipe")] = None,
    engine: Annotated[
        str | None, typer.Option(help="where map phases run: local | ray (default: the recipe's, else local)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="worker processes (local) or CPUs (local Ray); default: the cores"),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="ray engine: a cluster to join, auto or HOST:PORT (default: a local Ray)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate and print the plan; run nothing")
    ] = False,
    teacher: Annotated[
        str | None,
        typer.Option(help="every teacher, judge and student: `cpu` or `openai:MODEL` (OPENAI_BASE_URL/KEY)"),
    ] = None,
) -> None:
    """Run a recipe end to end and print the stage summary (and runs/<run>/run.log)."""
    from flows.build import build_dataset
    from flows.plan import print_plan
    from flows.prefect_api import start_ephemeral_api
    from flows.recipe import load_recipe, validate_recipe
    from flows.summary import print_summary

    loaded = load_recipe(recipe, data_dir).with_teacher(teacher)
    validate_recipe(loaded)
    target = run_dir or Path("runs") / loaded.name
    if dry_run:
        print_plan(console, loaded, limit, target)
        return
    with (
        run_log(target / "run.log", logging.DEBUG if state["debug"] else logging.WARNING),
        quiet_prefect(state["debug"]),
    ):
        chosen = loaded.engine.overridden(engine, workers, address)
        if chosen.name == "ray":  # a missing optional extra fails before any work
            from stages.engine_ray import import_ray

            import_ray()
        say(f"[bold]longcot run[/bold] {recipe} → {target} (engine {chosen.name})")
        start_ephemeral_api()
        with console.status(f"running {recipe} into {target} …"):
            manifest = build_dataset(
                str(recipe),
                str(target),
                limit=limit,
                data_dir=data_dir,
                engine=engine,
                workers=workers,
                address=address,
                teacher=teacher,
            )
        print_summary(manifest, target)


@app.command()
@guarded
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory, e.g. runs/quickstart")]) -> None:
    """Print the stage summary of a finished (or failed) run and rewrite its report.html."""
    from flows.html_report import write_report
    from flows.manifest import Manifest
    from flows.summary import print_summary

    manifest = Manifest.load(run_dir).data
    write_report(run_dir, manifest)
    print_summary(manifest, run_dir)


@app.command()
@guarded
def inspect(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    stage: Annotated[
        str, typer.Argument(help="stage name or kind (02-exact_dedup, exact_dedup), or `dedup` for clusters")
    ],
    dropped: Annotated[bool, typer.Option("--dropped", help="show dropped rows with their evidence")] = False,
    reason: Annotated[str | None, typer.Option(help="only dropped rows with this drop_reason")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="how many rows")] = 5,
) -> None:
    """Show rows of a stage, with the evidence for dropped ones; `dedup` shows every dedup stage's
    largest clusters, members side by side."""
    from flows.summary import find_stage, row_panel, select_rows
    from stages.dedup import report as dedup_report

    if stage == "dedup":
        found = dedup_report.dedup_reports(run_dir)
        if not found:
            raise FileNotFoundError(f"no dedup stage in {run_dir}")
        for stage_dir, _ in found:
            console.print(dedup_report.format_clusters(stage_dir, n))
        return

    stage_dir = find_stage(run_dir, stage)
    rows = select_rows(stage_dir, dropped or reason is not None, reason, n)
    if rows.height == 0:
        console.print(f"no rows in {stage_dir.name} matching that selection")
        return
    for row in rows.iter_rows(named=True):
        console.print(row_panel(row))


cli_decontam.register(app)
cli_dedup.register(app)
cli_generate.register(app)
cli_push.register(app)
cli_verify.register(app)


if __name__ == "__main__":  # python -m flows.cli, where the console script is not installed
    app()
