"""Publishing: the card's configs load back with `datasets`, and a push interrupted half way resumes
with no duplicate or missing shard (against an HfApi double that stores files like the Hub does)."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import datasets
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_verify import LABELLED_GENERATION_FIELDS, read_records, to_generation_rows
from flows.html_report import write_report
from flows.manifest import Manifest
from flows.push import Ledger, build_tree, ledger_path, push, write_tree
from stages.export import ExportConfig
from stages.passrate import PassRateConfig
from stages.registry import stage
from stages.runner import Step, run_step

QWEN = "generations/qwen25math_math_cot_100_samples.jsonl"
SECRET = "hf_TEST_SECRET_do_not_print_0123456789"


def build_run(root: Path, data: Path) -> Path:
    """A finished run from the real Qwen2.5-Math samples (labels as verdicts): pass_rate, then export
    with a validation split and small shards, so the tree has several shards per split."""
    run_dir = root / "qwen-run"
    records, _ = read_records(data / QWEN)
    rows = to_generation_rows(records, LABELLED_GENERATION_FIELDS, "math_cot_100", "math").with_columns(
        pl.col("label").alias("correct"),
        pl.lit("qwen2.5-math").alias("model"),
        (pl.col("response").str.len_chars() // 4).alias("completion_tokens"),
    )
    (root / "input").mkdir(parents=True)
    rows.write_parquet(root / "input" / "part-00000.parquet")
    recipe = {
        "name": "qwen-run",
        "description": "Qwen2.5-Math samples, pass-rate filtered (a test fixture).",
        "sources": [{"name": "math_cot_100", "path": str(data / QWEN), "preset": None}],
        "stages": [{"stage": "pass_rate", "low": 0.1, "high": 0.9}, {"stage": "export"}],
    }
    manifest = Manifest.start(run_dir, recipe, "test")
    first = run_step(
        Step(stage("pass_rate"), PassRateConfig(low=0.0, high=0.99), root / "input", run_dir / "01-pass_rate")
    )
    manifest.record_stage(first)
    config = ExportConfig(
        validation_fraction=0.3,
        shard_rows=8,
        select={"policy": "all"},
        tokenizer=None,
        require_reasoning=False,
    )
    second = run_step(Step(stage("export"), config, run_dir / "01-pass_rate" / "kept", run_dir / "02-export"))
    manifest.record_stage(second)
    manifest.finish("succeeded")
    write_report(run_dir, manifest.data)
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shared_data) -> Path:
    return build_run(tmp_path_factory.mktemp("push"), shared_data)


def card_header(path: Path) -> dict:
    return yaml.safe_load(path.read_text().split("---")[1])


def test_to_dir_tree_loads_back_with_the_cards_configs(run_dir, tmp_path):
    tree = build_tree(run_dir)
    target = tmp_path / "tree"
    write_tree(tree, target, Ledger(tmp_path / "ledger.json", str(target), None))
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == sorted(f.path for f in tree), "exactly the tree a push uploads"
    assert tree[-1].path == "README.md"
    header = card_header(target / "README.md")
    configs = {c["config_name"]: c for c in header["configs"]}
    assert set(configs) == {"sft", "rl"} and configs["sft"].get("default") is True
    export = run_dir / "02-export"
    for name, config in configs.items():
        loaded = datasets.load_dataset(str(target), name, cache_dir=str(tmp_path / "hf-cache"))
        assert set(loaded) == {d["split"] for d in config["data_files"]} == {"train", "validation"}
        for split, rows in loaded.items():
            expected = pl.read_parquet(export / name / split)
            got = pl.from_arrow(rows.data.table)
            assert got.height == expected.height > 0
            assert got.to_dicts() == expected.to_dicts(), f"{name}/{split} rows match"
    sft = datasets.load_dataset(str(target), split="train", cache_dir=str(tmp_path / "hf-cache"))  # default
    assert sft[0]["messages"][1]["content"].startswith("<think>")
    assert len(list(target.glob("sft/train-*.parquet"))) > 1, "several shards per split"


def test_card_has_provenance_counts_histograms_and_recipe(run_dir, tmp_path):
    card = (run_dir / "card" / "README.md").read_text()
    header = card_header(run_dir / "card" / "README.md")
    assert header["license"] == "other", "a source without a known licence makes the card's licence other"
    for expected in (
        "| math_cot_100 | – | ? | unknown |",  # no preset: licence unknown, said so
        "| 01-pass_rate | 800 |",
        "![pass rates](images/pass_rate.png)",
        "![lengths](images/lengths.png)",
        "estimate: ceil(chars / 4)",
        "```yaml\nname: qwen-run",
        "**Short-CoT**: exported with `require_reasoning: false`",  # Qwen2.5-Math answers have no thinking
    ):
        assert expected in card, expected
    assert (run_dir / "card" / "images" / "pass_rate.png").read_bytes()[:4] == b"\x89PNG"


class FakeHub:
    """An HfApi double: repos, branches, files per revision, commits of add/delete operations.
    `fail_at` makes commit number N fail: before it lands, or (`after_store`) after it landed, as a
    connection lost while the reply was on its way."""

    def __init__(self, fail_at: int | None = None, after_store: bool = False):
        self.fail_at, self.after_store = fail_at, after_store
        self.repos: dict[str, dict] = {}
        self.trees: dict[str, dict[str, bytes]] = {"main": {}}
        self.added: Counter[str] = Counter()
        self.commits = 0

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False):
        assert repo_type == "dataset"
        self.repos.setdefault(repo_id, {"private": private})

    def create_branch(self, repo_id, *, branch, repo_type=None, exist_ok=False):
        self.trees.setdefault(branch, dict(self.trees["main"]))

    def list_repo_files(self, repo_id, *, repo_type=None, revision=None):
        return sorted(self.trees[revision or "main"])

    def get_paths_info(self, repo_id, paths, *, repo_type=None, revision=None):
        tree = self.trees[revision or "main"]
        infos = []
        for p in paths:
            if p in tree:
                data = tree[p]
                lfs = (
                    SimpleNamespace(sha256=hashlib.sha256(data).hexdigest())
                    if p.endswith((".parquet", ".png"))
                    else None
                )
                blob = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
                infos.append(SimpleNamespace(path=p, lfs=lfs, blob_id=blob))
        return infos

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, revision=None):
        self.commits += 1
        if self.commits == self.fail_at and not self.after_store:
            raise ConnectionError("connection reset")
        tree = self.trees[revision or "main"]
        for op in operations:
            if hasattr(op, "path_or_fileobj"):
                tree[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
                self.added[op.path_in_repo] += 1
            else:
                tree.pop(op.path_in_repo)
        if self.commits == self.fail_at:
            raise ConnectionError("connection reset after the commit landed")


def assert_complete(hub: FakeHub, tree, revision: str | None = None) -> None:
    remote = hub.trees[revision or "main"]
    assert sorted(remote) == sorted(f.path for f in tree), "no missing and no extra file"
    for f in tree:
        assert remote[f.path] == f.source.read_bytes(), f.path


@pytest.mark.parametrize("after_store", [False, True], ids=["fails-before-commit", "fails-after-commit"])
def test_interrupted_push_resumes_without_duplicate_or_missing_shard(run_dir, tmp_path, after_store):
    tree = build_tree(run_dir)
    shards = [f for f in tree if f.path.endswith(".parquet")]
    assert len(shards) > 8, "more than one commit's worth of shards"
    hub = FakeHub(fail_at=2, after_store=after_store)
    hub.trees["main"]["sft/train-00042-of-00043.parquet"] = b"stale shard of an earlier push"
    ledger_file = tmp_path / "ledger.json"
    with pytest.raises(ConnectionError):
        push(tree, "org/qwen", hub, Ledger(ledger_file, "org/qwen", None))
    half = set(hub.trees["main"]) - {"sft/train-00042-of-00043.parquet"}
    assert 0 < len(half) < len(tree) and "README.md" not in half, "interrupted half way, card not yet up"

    result = push(tree, "org/qwen", hub, Ledger(ledger_file, "org/qwen", None))
    assert_complete(hub, tree)
    assert max(hub.added.values()) == 1, "no file was uploaded twice"
    assert result["deleted"] == 1 and result["skipped"] == len(half), "what landed is not sent again"
    again = push(tree, "org/qwen", hub, Ledger(ledger_file, "org/qwen", None))
    assert again["uploaded"] == 0 and again["commits"] == 0, "a finished push is a no-op"


def test_cli_push_token_from_env_only_and_to_dir(run_dir, tmp_path, monkeypatch):
    hub = FakeHub()
    seen = {}

    def fake_api(token=None):
        seen["token"] = token
        return hub

    monkeypatch.setattr("huggingface_hub.HfApi", fake_api)
    runner = CliRunner()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = runner.invoke(app, ["push", str(run_dir), "--repo", "org/qwen"])
    assert result.exit_code == 1 and "HF_TOKEN" in result.output and not hub.repos

    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = runner.invoke(app, ["push", str(run_dir), "--repo", "org/qwen", "--revision", "v1", "--private"])
    assert result.exit_code == 0, result.output
    assert seen["token"] == SECRET and SECRET not in result.output
    assert hub.repos == {"org/qwen": {"private": True}} and "README.md" in hub.trees["v1"]
    assert not hub.trees["main"], "pushed to the branch only"
    ledger = ledger_path(run_dir, "org/qwen", "v1")
    assert ledger.is_file() and SECRET not in ledger.read_text()

    result = runner.invoke(app, ["push", str(run_dir), "--to-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()
    ) == sorted(hub.trees["v1"]), "--to-dir writes exactly what was pushed"
    result = runner.invoke(app, ["push", str(run_dir), "--to-dir", str(tmp_path / "out")])
    assert result.exit_code == 0 and "0 copied" in result.output, "a finished --to-dir is a no-op"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own file")
    result = runner.invoke(app, ["push", str(run_dir), "--to-dir", str(tmp_path / "mine")])
    assert result.exit_code == 1 and "notes.txt" in result.output, "a folder of other files is refused"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_interrupted_to_dir_push_resumes_without_duplicate_or_missing_shard(run_dir, tmp_path, monkeypatch):
    """The 10th file copy dies half way (a kill while writing); the same command again completes."""
    tree = build_tree(run_dir)
    target = tmp_path / "tree"
    (target / "sft").mkdir(parents=True)
    (target / "sft" / "train-00042-of-00043.parquet").write_bytes(b"stale shard of an earlier push")
    copies: Counter[str] = Counter()
    real_copy = shutil.copyfile

    def dying_copy(source, dest, fail_at=10):
        if sum(copies.values()) + 1 == fail_at:
            Path(dest).write_bytes(Path(source).read_bytes()[: Path(source).stat().st_size // 2])
            raise OSError("killed while copying")
        real_copy(source, dest)
        copies[str(Path(dest).relative_to(target)).removesuffix(".partial")] += 1

    monkeypatch.setattr(shutil, "copyfile", dying_copy)
    runner = CliRunner()
    result = runner.invoke(app, ["push", str(run_dir), "--to-dir", str(target)])
    assert result.exit_code == 1 and "killed while copying" in result.output
    assert len(copies) == 9 and "README.md" not in copies, "stopped half way, the card not yet written"
    assert list(target.rglob("*.partial")), "the cut-off copy is left under a temporary name only"

    monkeypatch.setattr(shutil, "copyfile", lambda s, d: dying_copy(s, d, fail_at=0))
    result = runner.invoke(app, ["push", str(run_dir), "--to-dir", str(target)])
    assert result.exit_code == 0, result.output
    assert f"{len(tree) - 9} copied, 9 already there, 1 stale deleted" in result.output
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == sorted(f.path for f in tree), "no missing shard, no stale or partial file"
    assert all((target / f.path).read_bytes() == f.source.read_bytes() for f in tree)
    assert set(copies) == {f.path for f in tree} and max(copies.values()) == 1, "nothing copied twice"
