"""The stage kinds a recipe can name, each with its config model, its function and its code version."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel

from flows.steps import StageFn
from stages import collect, export, passrate
from stages.decontam import DecontamConfig, markdown_summary, stage_html
from stages.decontam import run as decontam_run
from stages.decontam.registry import resource_files
from stages.dedup import embedding, exact, minhash
from stages.dedup import report as dedup_report
from stages.generate import GenerateConfig
from stages.generate import run as generate_run
from stages.verify import VerifyConfig
from stages.verify import run as verify_run

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
STAGES_DIR = Path(__file__).resolve().parents[1] / "stages"
# modules every stage builds on: a change in any of them invalidates every cached stage
SHARED_CODE = [STAGES_DIR / name for name in ("store.py", "records.py", "text.py", "answers.py", "embed.py")]


@dataclass(frozen=True)
class StageKind:
    name: str
    config: type[BaseModel]
    run: StageFn
    # an HTML fragment for the run report, from the stage directory (optional)
    html: Callable[[Path], str] | None = None
    # a Markdown summary of the report details, published as a Prefect artifact (optional)
    markdown: Callable[[dict], str] | None = None
    # data files (besides the input shards) whose content decides the result: part of the cache key
    resources: Callable[[BaseModel], list[Path]] | None = None

    @cached_property
    def version(self) -> str:
        """Hash of the stage's source (its package when it is one) plus the run store it writes with:
        editing the code invalidates cached results of this stage and of nothing else."""
        source = Path(inspect.getsourcefile(self.run) or "")
        files = (
            sorted(source.parent.rglob("*.py")) if source.name in ("stage.py", "__init__.py") else [source]
        )
        digest = hashlib.blake2b(digest_size=8)
        for path in [*files, *SHARED_CODE]:
            digest.update(path.read_bytes())
        return digest.hexdigest()


# Always the first stage; its input is the recipe's sources, not a shard directory.
COLLECT = StageKind("collect", collect.CollectConfig, collect.run)  # type: ignore[arg-type]

STAGES: dict[str, StageKind] = {
    kind.name: kind
    for kind in [
        StageKind("exact_dedup", exact.ExactDedupConfig, exact.run),
        StageKind("minhash_dedup", minhash.MinhashDedupConfig, minhash.run, html=dedup_report.stage_html),
        StageKind(
            "embedding_dedup", embedding.EmbeddingDedupConfig, embedding.run, html=dedup_report.stage_html
        ),
        StageKind(
            "decontaminate",
            DecontamConfig,
            decontam_run,
            html=stage_html,
            markdown=markdown_summary,
            resources=lambda c: [
                *resource_files(c.benchmarks, c.benchmark_dir, c.registry_file, c.extra_benchmarks),
                PROMPTS / "contamination_judge.md",
            ],
        ),
        StageKind(
            "generate",
            GenerateConfig,
            generate_run,
            # the LLM client lives in stages/llm (until the runner hashes the import graph)
            resources=lambda c: [
                *sorted(PROMPTS.glob("teacher_*.md")),
                *sorted((STAGES_DIR / "llm").rglob("*.py")),
            ],
        ),
        StageKind("verify", VerifyConfig, verify_run, resources=lambda c: [PROMPTS / "judge.md"]),
        StageKind(
            "pass_rate",
            passrate.PassRateConfig,
            passrate.run,
            # a student samples and verifies: those stages' code and prompts decide the rates too
            resources=lambda c: (
                [
                    *sorted((STAGES_DIR / "generate").rglob("*.py")),
                    *sorted((STAGES_DIR / "llm").rglob("*.py")),
                    *sorted((STAGES_DIR / "verify").rglob("*.py")),
                    *sorted(PROMPTS.glob("teacher_*.md")),
                    PROMPTS / "judge.md",
                ]
                if c.student
                else []
            ),
        ),
        StageKind(
            "export",
            export.ExportConfig,
            export.run,
            resources=lambda c: [STAGES_DIR / "select.py", STAGES_DIR / "tokens.py"],
        ),
    ]
}
