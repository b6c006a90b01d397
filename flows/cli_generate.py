"""`longcot generate PROBLEMS --out DIR`: the generation stage alone, on a directory of problem shards.

PROBLEMS is a stage directory (its kept/ is read) or a directory of Parquet shards. Options cover
the common settings; `--config FILE` (YAML or JSON, the fields of GenerateConfig) covers the rest,
and options given on the command line override it. Keys come from the environment only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli_common import guarded
from flows.console import console


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
        n: Annotated[int | None, typer.Option(help="samples per problem")] = None,
        max_tokens: Annotated[int | None, typer.Option(help="max new tokens per sample")] = None,
        concurrency: Annotated[int | None, typer.Option(help="requests in flight")] = None,
        limit: Annotated[int | None, typer.Option(help="at most this many problems")] = None,
        cache_dir: Annotated[Path | None, typer.Option(help="sample cache directory")] = None,
        config: Annotated[
            Path | None, typer.Option("--config", help="YAML/JSON with GenerateConfig fields")
        ] = None,
    ) -> None:
        """Sample a teacher for every problem; cached, resumable, fault tolerant."""
        from stages.generate import GenerateConfig, run
        from stages.store import StageWriter

        source = problems / "kept" if (problems / "kept").is_dir() else problems
        if not any(source.glob("part-*.parquet")):
            raise typer.BadParameter(f"no part-*.parquet shards in {source}", param_hint="PROBLEMS")
        given = {
            "model": model,
            "backend": backend,
            "n": n,
            "max_tokens": max_tokens,
            "concurrency": concurrency,
            "limit": limit,
            "cache_dir": cache_dir,
        }
        cfg = GenerateConfig.model_validate(_load(config) | {k: v for k, v in given.items() if v is not None})
        out.parent.mkdir(parents=True, exist_ok=True)
        with StageWriter(out, "generate") as writer:
            report = writer.finish(run(source, cfg, writer), config=cfg.model_dump(mode="json"))
        d = report["details"]
        console.print(
            f"samples {report['rows_in']:,} → kept {report['rows_kept']:,} ({d['truncated']} truncated), "
            f"dropped {report['rows_dropped']:,}; cache hits {d['cache_hits']:,}, requests {d['requests']:,}, "
            f"retries {d['retries']}, tokens {d['tokens_in']:,} in / {d['tokens_out']:,} out, ${d['cost_usd']:.4f}"
        )
        console.print(f"report: {out / 'report.json'}", soft_wrap=True)
