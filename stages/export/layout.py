"""Where an export's sets live and how `datasets` finds them: the YAML `configs:` of a dataset card.

The export stage writes a README.md at its root whose configs point at `sft/<split>/part-*.parquet`
and `rl/<split>/part-*.parquet`, so `datasets.load_dataset(<NN-export>, "sft")` (or `"rl"`) reads one
set with its own columns; the pushed card (stages.reports.card) declares the same configs over the
pushed file names. SFT, when it has rows, is the default config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stages.export.tokens import TokenStats
from stages.stage import Details

SETS = ("sft", "rl")
README = "README.md"
EXPORT_FILES = "{name}/{split}/part-*.parquet"  # in an export stage directory


class SplitCounts(Details):
    """One split of one set: rows, Parquet shards, token counts (SFT: the conversation; RL: the prompt)."""

    rows: int
    shards: int
    tokens: TokenStats


Sets = dict[str, dict[str, SplitCounts]]  # {set: {split: counts}}


def dataset_configs(splits: dict[str, list[str]], pattern: str) -> list[dict[str, Any]]:
    """One config per set that has rows, with data_files per split; `pattern` takes name and split."""
    return [
        {
            "config_name": name,
            **({"default": True} if name == "sft" else {}),
            "data_files": [
                {"split": split, "path": pattern.format(name=name, split=split)} for split in splits[name]
            ],
        }
        for name in SETS
        if splits.get(name)
    ]


def yaml_header(fields: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True) + "---\n"


def export_readme(sets: Sets, long_cot: bool | None) -> str:
    """The export root's README.md from the stage's per-set counts."""
    splits = {name: [s for s, c in per.items() if c.rows] for name, per in sets.items()}
    kind = {
        True: "long-CoT: every SFT answer carries non-empty reasoning inside <think>…</think>",
        False: "short-CoT: `require_reasoning: false`, SFT answers may have empty reasoning",
        None: "problems only: SFT rows hold the user turn",
    }[long_cot]
    rows = [f"| {n} | {s} | {c.rows:,} |" for n, per in sets.items() for s, c in per.items()]
    body = [
        "# longcot export",
        f"SFT and RL sets of one longcot run ({kind}). Load one set with its own columns:",
        "```python\nfrom datasets import load_dataset\n\n"
        'sft = load_dataset("path/to/this/dir", "sft")\nrl = load_dataset("path/to/this/dir", "rl")\n```',
        "| config | split | rows |\n|---|---|---|\n" + "\n".join(rows) if rows else "No rows exported.",
        "`longcot push RUN` publishes these sets with the full dataset card.",
    ]
    return yaml_header({"configs": dataset_configs(splits, EXPORT_FILES)}) + "\n" + "\n\n".join(body) + "\n"


def write_export_readme(root: Path, sets: Sets, long_cot: bool | None) -> None:
    (root / README).write_text(export_readme(sets, long_cot), encoding="utf-8")
