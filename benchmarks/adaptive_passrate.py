"""Adaptive pass-rate sampling replayed on real verdicts: how many samples it would have drawn.

    python benchmarks/adaptive_passrate.py [--rounds 2,4,8] [--band 0.1,0.9 ...]

The Qwen2.5-Math file in ../shared/data/generations holds 8 real samples for each of 100 MATH
problems. They are verified by the verify stage, then replayed in order through the pass_rate stage's
`settled` rule: a problem asks for its first n_r samples in round r and stops as soon as its fate in
[low, high] can no longer change. Printed per band: samples drawn against 8 x 100, and whether every
problem's fate equals the fate from all 8 samples (it must: the rule is exact).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.cli_verify import LABELLED_GENERATION_FIELDS, read_records, to_generation_rows
from stages.passrate import PassRateConfig, pass_rates, sample_outcomes, settled, verdict
from stages.verify import VerifyConfig, verify_rows

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILE = "generations/qwen25math_math_cot_100_samples.jsonl"


def verified_samples(work: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = to_generation_rows(read_records(DATA / FILE)[0], LABELLED_GENERATION_FIELDS, "qwen_math", None)
    verify_rows([rows], VerifyConfig(workers=2), work / "verify")
    kept = pl.read_parquet(work / "verify" / "kept").select("uid", "sample", "correct")
    dropped = pl.read_parquet(work / "verify" / "dropped").select("uid", "sample", "drop_reason")
    return kept, dropped


def fates(kept: pl.DataFrame, dropped: pl.DataFrame, upto: int, config: PassRateConfig) -> pl.DataFrame:
    """uid, n_samples, n_correct, fate (null = kept) from each problem's first `upto` samples."""
    first = pl.col("sample") < upto
    rates = pass_rates(sample_outcomes(kept.filter(first).lazy(), dropped.filter(first).lazy()))
    return rates.with_columns(verdict(config).alias("fate"))


def replay(
    kept: pl.DataFrame, dropped: pl.DataFrame, k: int, rounds: list[int], config: PassRateConfig
) -> dict:
    full = fates(kept, dropped, k, config).select("uid", "fate")
    undecided = full.select("uid")
    drawn, previous, final = 0, 0, []
    for n in rounds:
        drawn += undecided.height * (n - previous)
        previous = n
        now = undecided.join(fates(kept, dropped, n, config), on="uid", how="left").with_columns(
            pl.col("n_samples", "n_correct").fill_null(0)
        )
        done = now.filter(settled(now, k - n, config))
        final.append(done.select("uid", "fate"))
        undecided = undecided.join(done.select("uid"), on="uid", how="anti")
    decided = pl.concat(final).join(full, on="uid", suffix="_full")
    same = decided.filter(pl.col("fate").eq_missing(pl.col("fate_full"))).height == full.height
    return {"drawn": drawn, "full": k * full.height, "same_fates": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", default="2,4,8")
    parser.add_argument("--band", action="append", default=None, help="low,high (repeatable)")
    args = parser.parse_args()
    rounds = [int(r) for r in args.rounds.split(",")]
    bands = [tuple(float(x) for x in b.split(",")) for b in (args.band or ["0.1,0.9", "0.01,1.0", "0.0,0.5"])]
    with tempfile.TemporaryDirectory() as tmp:
        kept, dropped = verified_samples(Path(tmp))
    k = rounds[-1]
    print(f"{FILE}: {kept['uid'].n_unique()} problems x {k} samples, rounds {rounds}")
    for low, high in bands:
        config = PassRateConfig(low=low, high=high)
        r = replay(kept, dropped, k, rounds, config)
        print(
            f"  band [{low}, {high}]: {r['drawn']:,} samples drawn of {r['full']:,} "
            f"({1 - r['drawn'] / r['full']:.0%} saved); same fate for every problem: {r['same_fates']}"
        )


if __name__ == "__main__":
    main()
