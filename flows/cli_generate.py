"""`longcot generate PROBLEMS --out DIR`: the generation stage alone, on a directory of problem shards.

PROBLEMS is a stage directory (its kept/ is read) or a directory of Parquet shards. Options cover
the common settings; `--config FILE` (YAML or JSON, the fields of GenerateConfig: `llm: {...}`,
`limit`, `templates`) covers the rest, and options given on the command line override it. Keys come
from the environment only. Exits 1 when no sample succeeded (the error kinds are printed), 130/143
when SIGINT/SIGTERM stopped it (what finished is cached: run it again to resume).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli_common import fail, guarded
from flows.console import console


def cost_line(d: dict[str, Any]) -> str:
    """Successful cost next to what failed attempts cost (reported by the server or estimated)."""
    line = f"cost ${d['cost_usd']:.4f}"
    if d["batch_requests"]:
        line += f" ({d['batch_requests']:,} requests at the batch rate)"
    if d["failed_attempts"]:
        line += (
            f" + ${d['failed_cost_usd']:.4f} for {d['failed_attempts']:,} failed attempts"
            f" (${d['failed_cost_estimated_usd']:.4f} of it estimated)"
        )
    line += f" = ${d['total_cost_usd']:.4f}"
    if d["stopped"] == "budget":
        line += f"; budget ${d['budget_usd']} reached: the rest were not requested (budget_exhausted)"
    return line


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text) or {}


def register(app: typer.Typer) -> None:
    """Add the `generate` command to the longcot CLI."""

    @app.command("generate")
    @guarded
    def generate(
        problems: Annotated[Path, typer.Argument(help="stage directory (kept/ is read) or shard directory")],
        out: Annotated[Path, typer.Option("--out", help="output directory: kept/, dropped/, report.json")],
        model: Annotated[
            str | None, typer.Option(help="model name; for --backend local a MODELS name or GGUF")
        ] = None,
        backend: Annotated[str | None, typer.Option(help="openai | vllm | local")] = None,
        mode: Annotated[str | None, typer.Option(help="online | batch (the OpenAI Batch API)")] = None,
        n: Annotated[int | None, typer.Option(help="samples per problem")] = None,
        max_tokens: Annotated[int | None, typer.Option(help="max new tokens per sample")] = None,
        concurrency: Annotated[int | None, typer.Option(help="requests in flight")] = None,
        limit: Annotated[int | None, typer.Option(help="at most this many problems")] = None,
        cache_dir: Annotated[Path | None, typer.Option(help="sample cache directory")] = None,
        budget_usd: Annotated[float | None, typer.Option(help="stop sending before spending more")] = None,
        config: Annotated[
            Path | None, typer.Option("--config", help="YAML/JSON with GenerateConfig fields")
        ] = None,
    ) -> None:
        """Sample a teacher for every problem; cached, resumable, fault tolerant."""
        from stages.generate import GenerateConfig
        from stages.llm import LLMError
        from stages.registry import run_stage

        source = problems / "kept" if (problems / "kept").is_dir() else problems
        if not any(source.glob("part-*.parquet")):
            raise typer.BadParameter(f"no part-*.parquet shards in {source}", param_hint="PROBLEMS")
        llm = {
            "model": model,
            "backend": backend,
            "mode": mode,
            "n": n,
            "max_tokens": max_tokens,
            "concurrency": concurrency,
            "cache_dir": cache_dir,
            "budget_usd": budget_usd,
        }
        raw = _load(config)
        raw["llm"] = (raw.get("llm") or {}) | {k: v for k, v in llm.items() if v is not None}
        if limit is not None:
            raw["limit"] = limit
        cfg = GenerateConfig.model_validate(raw)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            report = run_stage("generate", source, cfg, out, force=True).model_dump(mode="json")
        except LLMError as exc:
            if "stopped by" not in str(exc):
                raise
            console.print(f"[yellow]{exc}[/yellow]", highlight=False, soft_wrap=True)
            raise typer.Exit(code=143 if "SIGTERM" in str(exc) else 130) from None
        d = report["details"]
        console.print(
            f"samples {report['rows_in']:,} → kept {report['rows_kept']:,} ({d['truncated']} truncated), "
            f"dropped {report['rows_dropped']:,}; cache hits {d['cache_hits']:,}, requests {d['requests']:,}, "
            f"retries {d['retries']}, tokens {d['tokens_in']:,} in / {d['tokens_out']:,} out"
        )
        console.print(cost_line(d), highlight=False)
        if d["errors_by_kind"]:
            kinds = ", ".join(f"{kind} {count:,}" for kind, count in d["errors_by_kind"].items())
            console.print(f"failed samples by error kind: {kinds}", highlight=False)
        console.print(f"report: {out / 'report.json'}", soft_wrap=True)
        if report["rows_in"] and d["samples_generated"] + d["cache_hits"] == 0:
            raise fail("no sample succeeded (see the error kinds above)")
