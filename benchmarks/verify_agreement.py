"""Agreement of the verify stage with the correctness labels shipped in ../shared/data/generations.

    .venv/bin/python benchmarks/verify_agreement.py

Runs the full stage (quality filters + math verifier, 2 workers) on the Qwen2.5-Math 100 x 8 file and
the Sky-T1 AIME 2024 / AMC 2023 long-CoT files, prints agreement overall and on the rows that pass
the quality filters, and every disagreement with the evidence needed to adjudicate it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from flows.cli_verify import LABELLED_GENERATION_FIELDS, read_records, to_generation_rows  # noqa: E402
from stages.verify import VerifyConfig, verify_rows  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "generations"
FILES = {
    "qwen25math_math_cot_100_samples.jsonl": "qwen25math_math",
    "skyt1_math_14b_aime24_longcot.jsonl": "skyt1_aime24",
    "skyt1_math_14b_amc23_longcot.jsonl": "skyt1_amc23",
}


def main() -> None:
    frames = [
        to_generation_rows(read_records(DATA / f)[0], LABELLED_GENERATION_FIELDS, src, None)
        for f, src in FILES.items()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "verify"
        report = verify_rows(frames, VerifyConfig(workers=2), out).model_dump(mode="json")
        rows = pl.concat(
            [pl.read_parquet(out / "kept"), pl.read_parquet(out / "dropped")], how="diagonal_relaxed"
        )
    rows = rows.with_columns(ours=pl.col("correct").fill_null(False), passed=pl.col("drop_reason").is_null())
    print(f"stage: {report['rows_in']} rows, {report['rows_kept']} kept, drops {report['drop_reasons']}")
    for source, group in rows.group_by("source", maintain_order=True):
        verified = group.filter("passed")
        print(
            f"{source[0]:>16}: agreement {(group['ours'] == group['label']).sum()}/{group.height} overall, "
            f"{(verified['ours'] == verified['label']).sum()}/{verified.height} on rows passing the quality filters"
        )
    total = (rows["ours"] == rows["label"]).mean()
    kept = rows.filter("passed")
    print(
        f"all: {total:.2%} overall, {(kept['ours'] == kept['label']).mean():.2%} on rows passing the quality filters"
    )
    print("disagreements:")
    for row in rows.filter(pl.col("ours") != pl.col("label")).iter_rows(named=True):
        detail = json.loads(row["verdict_detail"] or row["drop_detail"] or "{}")
        print(
            f"  {row['source']} idx={row['uid']} sample={row['sample']}: gold={row['answer']!r} "
            f"extracted={row['extracted']!r} label={row['label']} ours={row['correct']} "
            f"drop={row['drop_reason']} detail={json.dumps(detail)[:160]}"
        )


if __name__ == "__main__":
    main()
