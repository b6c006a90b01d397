"""Export's token counts: each distinct text encoded once, in bounded chunks, the same counts as
encoding every text on its own."""

from __future__ import annotations

import json

import polars as pl

from stages.collect import CollectConfig, SourceSpec
from stages.export import ExportConfig
from stages.export import tokens as tokens_module
from stages.export.tokens import length_stats, token_counter
from stages.registry import run_stage
from tests.conftest import write_jsonl


def real_problems(shared_data, n: int) -> list[dict]:
    rows = []
    for name in ("deepscaler_train_math", "gsm8k_train"):
        with (shared_data / "sources" / f"{name}.jsonl").open(encoding="utf-8") as f:
            for line, _ in zip(f, range(n // 2), strict=False):
                record = json.loads(line)
                rows.append({"problem": record.get("problem") or record["question"], "answer": "1"})
    return rows


class Spy:
    """The real tokenizer, recording how many texts each batch call encoded."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.calls = tokenizer, []

    def encode_batch_fast(self, texts, add_special_tokens):
        self.calls.append(len(texts))
        return self.tokenizer.encode_batch_fast(texts, add_special_tokens=add_special_tokens)


def test_each_distinct_text_is_encoded_once_in_chunks_with_the_counts_of_single_encodes(
    shared_data, monkeypatch
):
    texts = [r["problem"] for r in real_problems(shared_data, 300)]
    texts = [*texts, *texts[:100], None, ""]  # repeats (an SFT prompt and its RL prompt), a null
    counter = token_counter("auto")
    assert counter.kind == "proxy"
    real = counter._tokenizer
    spy = Spy(real)
    counter._tokenizer = spy
    monkeypatch.setattr(tokens_module, "CHUNK_TEXTS", 64)
    counts = counter.count(pl.Series("t", texts))
    expected = [len(real.encode(t or "", add_special_tokens=False).ids) for t in texts]
    assert counts.to_list() == expected and counts.name == "t"
    assert sum(spy.calls) == len({t or "" for t in texts}), "each distinct text once"
    assert max(spy.calls) == 64 and len(spy.calls) == -(-sum(spy.calls) // 64), "chunks of at most 64"


def test_no_teacher_export_counts_every_prompt_as_a_single_encode_would(shared_data, tmp_path):
    source = SourceSpec(
        name="real", path=write_jsonl(tmp_path / "real.jsonl", real_problems(shared_data, 400))
    )
    run_stage("collect", None, CollectConfig(sources=[source]), tmp_path / "01")
    report = run_stage("export", tmp_path / "01" / "kept", ExportConfig(), tmp_path / "02")
    tokenizer = token_counter("auto")._tokenizer

    def count(prompts: pl.Series) -> pl.Series:
        return pl.Series([len(tokenizer.encode(p, add_special_tokens=False).ids) for p in prompts])

    sft = pl.read_parquet(tmp_path / "02" / "sft" / "train")
    rl = pl.read_parquet(tmp_path / "02" / "rl" / "train")
    sft_expected = count(sft["messages"].list.first().struct.field("content"))
    assert sft["num_tokens"].to_list() == sft_expected.to_list()
    sets = report.details.sets
    assert sets["sft"]["train"].tokens == length_stats(sft_expected)
    assert sets["rl"]["train"].tokens == length_stats(
        count(rl["prompt"].list.first().struct.field("content"))
    )
    assert sets["sft"]["train"].tokens.rows == 400 and report.details.tokens.estimated_texts == 0
