"""Export: the SFT problem set and verl's RL layout."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import polars as pl
import pytest
from pydantic import ValidationError

from flows.cli_verify import LABELLED_GENERATION_FIELDS, read_records, to_generation_rows
from flows.recipe import load_recipe, validate_recipe
from stages.collect import CollectConfig, SourceSpec
from stages.engine import LocalEngine
from stages.export import ExportConfig
from stages.export.stage import RlExcluded
from stages.passrate import PassRateConfig
from stages.registry import run_stage, stage
from stages.runner import run_steps
from stages.stage import StageReport
from tests.conftest import write_jsonl

QWEN = "generations/qwen25math_math_cot_100_samples.jsonl"
# The data_source values verl's default reward (verl.utils.reward_score.default_compute_score,
# volcengine/verl@03c3afd25c6a, verl/utils/reward_score/__init__.py) sends to a math scorer:
# gsm8k, MATH (math.compute_score), math_dapo / "aime*", and PRIME's numina sources.
VERL_MATH_KEYS = {
    "openai/gsm8k",
    "lighteval/MATH",
    "DigitalLearningGmbH/MATH-lighteval",
    "math_dapo",
    "numina_aops_forum",
    "numina_synthetic_math",
    "numina_amc_aime",
    "numina_synthetic_amc",
    "numina_cn_k12",
    "numina_olympiads",
}


def test_sft_and_rl_sets(tmp_path):
    math = [{"problem": "What is 2+3?", "answer": "5"}, {"problem": "Prove that sqrt 2 is irrational."}]
    code = [{"problem": "Write add(a, b).", "tests": ["assert add(1, 2) == 3"]}]
    sources = [
        SourceSpec(name="m", path=write_jsonl(tmp_path / "m.jsonl", math)),
        SourceSpec(name="c", path=write_jsonl(tmp_path / "c.jsonl", code), domain="code"),
    ]
    run_stage("collect", None, CollectConfig(sources=sources), tmp_path / "01")
    config = ExportConfig(instructions={"math": "Box it.", "code": ""}, split="train")
    report = run_stage("export", tmp_path / "01" / "kept", config, tmp_path / "02")
    assert report.rows_kept == 3 and report.details.rl_excluded == RlExcluded(no_ground_truth=1)

    sft = pl.read_parquet(tmp_path / "02" / "sft" / "train")
    assert sft.height == 3
    assert sft["messages"][0].to_list() == [{"role": "user", "content": "What is 2+3?\n\nBox it."}]

    rl = pl.read_parquet(tmp_path / "02" / "rl" / "train").sort("ability")
    assert rl.columns == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    code_row, math_row = rl.row(0, named=True), rl.row(1, named=True)
    assert math_row["reward_model"] == {"style": "rule", "ground_truth": "5"}
    assert math_row["extra_info"]["split"] == "train" and math_row["extra_info"]["source"] == "m"
    assert json.loads(code_row["reward_model"]["ground_truth"]) == ["assert add(1, 2) == 3"]
    assert code_row["prompt"][0]["content"] == "Write add(a, b)."
    assert sorted(rl["extra_info"].struct.field("index").to_list()) == [0, 1]


def test_verified_traces_become_think_messages_and_one_rl_row_per_problem(tmp_path):
    rows = pl.DataFrame(
        {
            "uid": ["p1", "p1", "p2"],
            "sample": [0, 1, 0],
            "model": ["teacher"] * 3,
            "source": ["s"] * 3,
            "domain": ["math"] * 3,
            "problem": ["What is 2+3?", "What is 2+3?", "Prove it."],
            "answer": ["5", "5", None],
            "reasoning": ["2 plus 3 is 5: two and three more make five.", "Maybe 6.", "Hmm."],
            "response": [r"\boxed{5}", r"\boxed{6}", "Done."],
            "correct": [True, False, None],
            "verifier": ["math", "math", "none"],
            "extracted": ["5", "6", None],
        }
    )
    (tmp_path / "in").mkdir()
    rows.write_parquet(tmp_path / "in" / "part-00000.parquet")
    report = run_stage("export", tmp_path / "in", ExportConfig(instructions={}), tmp_path / "out")
    assert (report.rows_kept, report.rows_dropped) == (1, 2)
    assert report.drop_reasons == {"incorrect": 1, "unverified": 1}
    sft = pl.read_parquet(tmp_path / "out" / "sft" / "train")
    assert sft["messages"][0].to_list() == [
        {"role": "user", "content": "What is 2+3?"},
        {
            "role": "assistant",
            "content": "<think>\n2 plus 3 is 5: two and three more make five.\n</think>\n\n\\boxed{5}",
        },
    ]
    rl = pl.read_parquet(tmp_path / "out" / "rl" / "train")
    assert rl["extra_info"].struct.field("uid").to_list() == ["p1"], "one RL row per problem with a truth"
    assert report.details.rl_excluded == RlExcluded(no_ground_truth=1)


def traces(problems: int = 40, samples: int = 3) -> pl.DataFrame:
    """Generation rows: problem i has `samples` traces; sample s is correct unless s == 0 and i is odd;
    trace length grows with s (sample 2 is the longest)."""
    rows = [
        {
            "uid": f"u{i:03d}",
            "sample": s,
            "model": "t",
            "source": "math" if i % 2 else "code",
            "domain": "math" if i % 2 else "code",
            "problem": f"Problem {i}",
            "answer": str(i),
            "reasoning": " ".join(["x"] * (10 + 50 * s + i)),  # words, as the long-CoT export counts
            "response": f"\\boxed{{{i}}}",
            "correct": not (s == 0 and i % 2),
            "completion_tokens": 10 + s,
            "pass_rate": 0.5,
            "n_samples": samples,
        }
        for i in range(problems)
        for s in range(samples)
    ]
    return pl.DataFrame(rows, schema_overrides={"sample": pl.Int32, "n_samples": pl.Int32})


def export(tmp_path, rows: pl.DataFrame, **config) -> tuple[StageReport, Path]:
    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    rows.write_parquet(tmp_path / "in" / "part-00000.parquet")
    report = run_stage("export", tmp_path / "in", ExportConfig(**config), tmp_path / "out")
    return report, tmp_path / "out"


def test_shortest_correct_sharegpt_split_and_shards(tmp_path):
    report, out = export(
        tmp_path,
        traces(),
        format="sharegpt",
        system="Be brief.",
        validation_fraction=0.25,
        shard_rows=7,
        tokenizer=None,
    )
    assert report.rows_kept == 40 and report.drop_reasons == {"not_selected": 60, "incorrect": 20}
    train, val = pl.read_parquet(out / "sft" / "train"), pl.read_parquet(out / "sft" / "validation")
    assert train.height + val.height == 40 and 0 < val.height < 20
    sft = pl.concat([train, val])
    # shortest correct: sample 0 for even problems, sample 1 (sample 0 is wrong) for odd ones
    assert all(s == (u % 2) for u, s in zip(sft["uid"].str.slice(1).cast(int), sft["sample"], strict=True))
    turn = sft.filter(pl.col("uid") == "u003").row(0, named=True)
    assert turn["system"] == "Be brief."
    assert [t["from"] for t in turn["conversations"]] == ["human", "gpt"]
    assert turn["conversations"][1]["value"].startswith("<think>\n" + " ".join(["x"] * 63))
    # splits are per problem, the same in SFT and RL, and stable: a second export agrees
    rl_val = pl.read_parquet(out / "rl" / "validation")["extra_info"].struct.field("uid")
    assert sorted(rl_val) == sorted(val["uid"]) and set(rl_val).isdisjoint(train["uid"])
    assert pl.read_parquet(out / "rl" / "validation")["extra_info"].struct.field(
        "split"
    ).unique().to_list() == ["validation"]
    shards = sorted(p.name for p in (out / "sft" / "train").iterdir())
    assert len(shards) == -(-train.height // 7) and all(
        pl.read_parquet(out / "sft" / "train" / n).height <= 7 for n in shards
    )
    sets = report.details.sets
    assert sets["sft"]["train"].rows == train.height and sets["rl"]["validation"].rows == val.height
    assert sets["sft"]["train"].shards == len(shards) and sets["sft"]["train"].tokens.rows == train.height
    tokens = report.details.tokens
    assert tokens.kind == "estimate" and tokens.estimated_texts == 80, "40 SFT + 40 RL texts, labelled"
    assert sft["num_tokens"].min() > 0
    (tmp_path / "again").mkdir()
    _, out2 = export(tmp_path / "again", traces(), validation_fraction=0.25, tokenizer=None)
    assert sorted(pl.read_parquet(out2 / "sft" / "validation")["uid"]) == sorted(val["uid"])


def test_messages_with_all_policy_real_tokenizer_and_pass_rate_in_rl(tmp_path):
    report, out = export(tmp_path, traces(4), select={"policy": "all"}, system="Sys.")
    assert report.rows_kept == 10 and report.drop_reasons == {"incorrect": 2}
    sft = pl.read_parquet(out / "sft" / "train")
    assert [m["role"] for m in sft["messages"][0]] == ["system", "user", "assistant"]
    tokens = report.details.tokens
    assert tokens.kind == "proxy" and "MiniLM" in tokens.tokenizer and tokens.estimated_texts == 0
    assert tokens.teacher_completion_tokens.max == 12
    rl = pl.read_parquet(out / "rl" / "train")
    assert rl["extra_info"][0]["pass_rate"] == 0.5 and rl["extra_info"][0]["n_samples"] == 3


def test_budget_balances_domains_and_prefers_long_reasoning(tmp_path):
    report, out = export(
        tmp_path, traces(40), select={"budget": {"problems": 10, "length_weight": 4}}, tokenizer=None
    )
    sft = pl.read_parquet(out / "sft" / "train")
    assert sft.height == 10 and report.drop_reasons["over_budget"] == 30
    assert sorted(sft["domain"].value_counts()["count"].to_list()) == [5, 5], "balanced over domains"
    # weighted to longer reasoning: the chosen problems are longer than average
    assert sft["uid"].str.slice(1).cast(int).mean() > 22
    rl = pl.read_parquet(out / "rl" / "train")
    assert rl.height == 40, "the budget picks SFT traces; every problem stays in RL"


THOUGHT = "One plus one: adding one more to one gives two."


def reasoning_traces() -> pl.DataFrame:
    """p1: the shortest correct traces have no reasoning (empty, whitespace, the one-word stub "and" of a
    small model echoing "<think> and </think>"), a longer one thinks; p2: its only correct trace has null
    reasoning (a non-reasoning teacher); p3: wrong, no reasoning."""
    return pl.DataFrame(
        {
            "uid": ["p1", "p1", "p1", "p1", "p2", "p3"],
            "sample": [0, 1, 2, 3, 0, 0],
            "model": ["t"] * 6,
            "source": ["gsm8k_train"] * 6,
            "domain": ["math"] * 6,
            "problem": ["1+1?", "1+1?", "1+1?", "1+1?", "2+2?", "3+3?"],
            "answer": ["2", "2", "2", "2", "4", "6"],
            "reasoning": ["", " \n\t", "and", THOUGHT, None, ""],
            "response": [r"\boxed{2}"] * 4 + [r"\boxed{4}", r"\boxed{7}"],
            "correct": [True, True, True, True, True, False],
        },
        schema_overrides={"sample": pl.Int32},
    )


def test_long_cot_export_drops_empty_reasoning_and_picks_a_trace_that_thinks(tmp_path):
    report, out = export(tmp_path, reasoning_traces(), tokenizer=None)
    assert report.drop_reasons == {"empty_reasoning": 4, "incorrect": 1}
    assert (report.rows_in, report.rows_kept) == (6, 1)
    sft = pl.read_parquet(out / "sft" / "train")
    assert sft.select("uid", "sample").rows() == [("p1", 3)], (
        "the longer trace that thinks, not the empty ones or the stub"
    )
    assert f"<think>\n{THOUGHT}\n</think>" in sft["messages"][0][-1]["content"]
    dropped = pl.read_parquet(out / "dropped")
    detail = json.loads(dropped.filter(pl.col("uid") == "p2")["drop_detail"][0])
    assert detail["has_reasoning"] is False and detail["require_reasoning"] is True
    stub = json.loads(dropped.filter((pl.col("uid") == "p1") & (pl.col("sample") == 2))["drop_detail"][0])
    assert (stub["reasoning_words"], stub["min_reasoning_words"]) == (1, 8)
    assert report.details.long_cot is True
    assert "long-CoT" in (out / "README.md").read_text()
    rl = pl.read_parquet(out / "rl" / "train")
    assert sorted(rl["extra_info"].struct.field("uid")) == ["p1", "p2", "p3"], "RL needs problems, not traces"


def test_correct_only_false_keeps_wrong_and_unverified_traces(tmp_path):
    """s1 kept its teacher's traces right or wrong: with correct_only false every trace is eligible."""
    rows = pl.concat(
        [reasoning_traces(), reasoning_traces().tail(1).with_columns(uid=pl.lit("p4"), correct=None)]
    )
    strict, _ = export(tmp_path / "strict", rows, tokenizer=None, select={"policy": "all"})
    assert strict.drop_reasons == {"empty_reasoning": 4, "incorrect": 1, "unverified": 1}
    report, out = export(
        tmp_path / "any", rows, tokenizer=None, select={"policy": "all", "correct_only": False}
    )
    assert report.drop_reasons == {"empty_reasoning": 6}, "still long-CoT: only traces that think"
    report, out = export(
        tmp_path / "short",
        rows,
        tokenizer=None,
        require_reasoning=False,
        select={"policy": "all", "correct_only": False},
    )
    assert (report.rows_kept, report.drop_reasons) == (7, {})
    assert sorted(pl.read_parquet(out / "sft" / "train")["uid"].unique()) == ["p1", "p2", "p3", "p4"]


def test_min_reasoning_words_sets_what_counts_as_reasoning(tmp_path):
    report, out = export(tmp_path, reasoning_traces(), tokenizer=None, min_reasoning_words=1)
    assert report.drop_reasons == {"empty_reasoning": 3, "not_selected": 1, "incorrect": 1}
    sft = pl.read_parquet(out / "sft" / "train")
    assert sft.select("uid", "sample").rows() == [("p1", 2)], "at 1 word the stub is the shortest that thinks"
    with pytest.raises(ValidationError, match="min_reasoning_words"):
        ExportConfig(min_reasoning_words=0)


def test_short_cot_opt_out_keeps_empty_reasoning_and_says_so(tmp_path):
    report, out = export(tmp_path, reasoning_traces(), tokenizer=None, require_reasoning=False)
    assert report.drop_reasons == {"not_selected": 3, "incorrect": 1}
    sft = pl.read_parquet(out / "sft" / "train").sort("uid")
    assert sft.select("uid", "sample").rows() == [("p1", 0), ("p2", 0)]
    assert sft["messages"][0][-1]["content"].startswith("<think>\n\n</think>")
    assert report.details.long_cot is False
    assert "short-CoT" in (out / "README.md").read_text()


def test_rl_data_source_is_a_verl_math_key_with_the_source_in_extra_info(tmp_path):
    rows = traces(4)  # even problems are code, odd are math; source = domain name
    _, out = export(tmp_path, rows, tokenizer=None)
    rl = pl.read_parquet(out / "rl" / "train")
    math = rl.filter(pl.col("ability") == "math")
    assert math.height == 2 and set(math["data_source"]) <= VERL_MATH_KEYS
    assert math["data_source"].unique().to_list() == ["lighteval/MATH"], "the scorer of \\boxed{} answers"
    assert math["extra_info"].struct.field("source").unique().to_list() == ["math"], "source name kept"
    code = rl.filter(pl.col("ability") == "code")
    assert code["data_source"].unique().to_list() == ["code"], "no verl scorer for longcot's test format"
    _, out = export(tmp_path / "override", rows, tokenizer=None, rl_data_source={"math": "openai/gsm8k"})
    rl = pl.read_parquet(out / "rl" / "train")
    assert rl.filter(pl.col("ability") == "math")["data_source"].unique().to_list() == ["openai/gsm8k"]


def test_export_root_loads_with_datasets_one_config_per_set(tmp_path):
    report, out = export(tmp_path, traces(40), validation_fraction=0.25, shard_rows=7, tokenizer=None)
    for name in ("sft", "rl"):
        loaded = datasets.load_dataset(str(out), name, cache_dir=str(tmp_path / "hf-cache"))
        assert set(loaded) == {"train", "validation"}
        for split, rows in loaded.items():
            expected = pl.read_parquet(out / name / split)
            assert rows.column_names == expected.columns, f"{name}: its own columns, not a mix"
            assert pl.from_arrow(rows.data.table).to_dicts() == expected.to_dicts(), f"{name}/{split}"
            assert rows.num_rows == report.details.sets[name][split].rows
    default = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert "messages" in default.column_names, "sft is the default config"


def test_msc_budget_fails_at_recipe_validation_without_a_classify_step(tmp_path, shared_data):
    recipe = tmp_path / "r.yaml"
    source = shared_data / "sources/gsm8k_train.jsonl"
    recipe.write_text(
        f"name: r\nsources: [{{name: s, path: {source}, preset: gsm8k_train}}]\n"
        "stages: [{stage: export, select: {budget: {problems: 10, balance_by: msc}}}]\n"
    )
    with pytest.raises(ValueError, match=r"balance_by is 'msc'.*classify"):
        validate_recipe(load_recipe(recipe))
    with pytest.raises(ValidationError, match="balance_by"):
        ExportConfig(select={"budget": {"problems": 10, "balance_by": "Not A Column"}})


def stage_outputs(stage_dir: Path) -> dict[str, pl.DataFrame]:
    """Every shard directory of a stage (kept, dropped, rates, sft/<split>, rl/<split>) as one frame."""
    dirs = sorted({p.parent for p in stage_dir.rglob("part-*.parquet")})
    return {str(d.relative_to(stage_dir)): pl.read_parquet(d) for d in dirs}


def test_pass_rate_and_export_are_the_same_on_1_and_4_workers(shared_data, tmp_path):
    """The real Qwen2.5-Math samples (labels as verdicts) through pass_rate and export in units of 90
    rows: 1 and 4 workers give the same shards, files and reports; one big unit the same rows."""
    records, _ = read_records(shared_data / QWEN)
    rows = to_generation_rows(records, LABELLED_GENERATION_FIELDS, "math_cot_100", "math").with_columns(
        pl.col("label").alias("correct"), pl.lit("qwen2.5-math").alias("model")
    )
    (tmp_path / "in").mkdir()
    for i, part in enumerate(rows.iter_slices(300)):  # three input shards
        part.write_parquet(tmp_path / "in" / f"part-{i:05d}.parquet")
    steps = [
        (stage("pass_rate"), PassRateConfig(low=0.1)),
        (
            stage("export"),
            ExportConfig(
                validation_fraction=0.3,
                shard_rows=7,
                select={"per_problem": 2, "budget": {"problems": 60}},
                require_reasoning=False,
            ),
        ),
    ]
    runs = {}
    for name, engine in [("w1", LocalEngine(1, 90)), ("w4", LocalEngine(4, 90)), ("whole", LocalEngine(1))]:
        with engine:
            runs[name] = run_steps(steps, tmp_path / name, engine, input_dir=tmp_path / "in")
    assert runs["w4"][1].report.workers == 4 and runs["w4"][1].report.rows_in == 768, "9 units on the pool"
    assert runs["w1"][0].report.drop_reasons == {"too_hard": 32}, "the 4 problems never solved"
    for one, four, whole in zip(runs["w1"], runs["w4"], runs["whole"], strict=True):
        a, b, c = (stage_outputs(r.out_dir) for r in (one, four, whole))
        assert sorted(a) == sorted(b) == sorted(c)
        for name in a:
            assert a[name].equals(b[name]), f"{one.out_dir.name}/{name}: 1 vs 4 workers"
            assert a[name].equals(c[name]), f"{one.out_dir.name}/{name}: units of 90 vs one unit"
        shards = [
            sorted(str(p.relative_to(r.out_dir)) for p in r.out_dir.rglob("*.parquet")) for r in (one, four)
        ]
        assert shards[0] == shards[1], "the same shard files"
        reports = [r.report.model_dump(exclude={"seconds", "workers"}) for r in (one, four, whole)]
        assert reports[0] == reports[1], one.out_dir.name
        if one.out_dir.name.endswith("pass_rate"):
            assert reports[0] == reports[2]
    export = runs["w1"][1]
    assert (export.out_dir / "README.md").read_text() == (runs["w4"][1].out_dir / "README.md").read_text()
    sets = export.report.details.sets
    sft = pl.concat([a for n, a in stage_outputs(export.out_dir).items() if n.startswith("sft/")])
    assert sft["uid"].n_unique() == 60 and sft.height == export.report.rows_kept <= 120, (
        "60 problems, 2 traces"
    )
    assert sets["sft"]["train"].rows + sets["sft"]["validation"].rows == sft.height
    rl = pl.concat([a for n, a in stage_outputs(export.out_dir).items() if n.startswith("rl/")])
    assert rl.height == 96, "every problem pass_rate kept has an RL row"
    info = rl.select(pl.col("extra_info").struct.field("split", "index"))
    for split, indexes in info.group_by("split"):
        assert sorted(indexes["index"]) == list(range(indexes.height)), f"{split}: 0..n-1 across units"
