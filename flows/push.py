"""Publish a run's exported sets and card to the Hugging Face Hub or a directory, resumably.

The tree (what is uploaded, and exactly what `--to-dir` writes):
    README.md                                the card (runs/<run>/card/README.md, rewritten first)
    images/<chart>.png                       the card's histograms
    sft/<split>-00000-of-0000N.parquet       from <NN-export>/sft/<split>/part-*.parquet
    rl/<split>-00000-of-0000N.parquet        from <NN-export>/rl/<split>/part-*.parquet

Resume, the same for both targets (`publish`): files go in commits of a few files (shards first, the
card last, so the card never names shards that are not there). After each commit the files are
recorded, with their sha256, in a ledger under the run (runs/<run>/push/<repo>@<revision>.json, or
dir__<name>-<hash>.json for a directory). A push started again skips what the ledger records and the
target still has, and checks the content of files the target has but the ledger does not know (an
interruption between a commit and the ledger write): the Hub's LFS sha256 or git blob id, a file's
sha256 in a directory. Files under sft/, rl/, images/ that the tree does not have (an earlier push
with more shards, a copy cut off by a kill) are deleted, so no stale shard is left to duplicate rows.
A directory gets each file through a temporary name and a rename: a killed copy never leaves a
truncated shard under its real name. A non-empty directory that holds anything besides a tree's
README.md, sft/, rl/, images/ is refused (it is not a previous --to-dir).

The token comes from HF_TOKEN only; it is handed to HfApi and never printed or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.html_report import write_card
from flows.manifest import Manifest
from stages.reports.card import CARD, SETS, data_file, export_dir, exported_splits
from stages.store import write_json

TOKEN_ENV = "HF_TOKEN"
REPO_TYPE = "dataset"
MANAGED = (*SETS, "images")  # remote folders the push owns: stale files in them are deleted
COMMIT_FILES = 8
COMMIT_BYTES = 1 << 30
PARTIAL = ".partial"  # suffix of a file being copied into a --to-dir


class PushError(RuntimeError):
    """A push that cannot start (no export, no token, a --to-dir holding other files)."""


@dataclass(frozen=True)
class TreeFile:
    path: str  # path in the repository
    source: Path  # local file
    sha256: str
    size: int

    def git_blob_id(self) -> str:
        """git's object id of the file (what the Hub reports for files not stored in LFS)."""
        digest = hashlib.sha1(f"blob {self.size}\0".encode())
        with self.source.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()


def _file(path: str, source: Path) -> TreeFile:
    with source.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return TreeFile(path, source, digest, source.stat().st_size)


def build_tree(run_dir: Path) -> list[TreeFile]:
    """The files to publish, card last. Rewrites the card from the run first."""
    manifest = Manifest.load(run_dir).data
    export = export_dir(run_dir, manifest)
    if export is None:
        raise PushError(f"{run_dir}: the run has no finished export stage; nothing to push")
    card = write_card(run_dir, manifest)
    assert card is not None
    files = [
        _file(data_file(name, split, i, len(shards)), shard)
        for name, splits in exported_splits(export).items()
        for split, shards in splits.items()
        for i, shard in enumerate(shards)
    ]
    files += [_file(f"images/{p.name}", p) for p in sorted((card.parent / "images").glob("*.png"))]
    return [*files, _file(CARD, card)]


def hf_api() -> Any:
    """An HfApi with the token from HF_TOKEN (and nothing else: no stored login is used)."""
    from huggingface_hub import HfApi

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise PushError(
            f"set {TOKEN_ENV} to a Hugging Face token with write access (it is read from there only)"
        )
    return HfApi(token=token)


class Ledger:
    """Files committed to one repo revision, with their sha256; rewritten atomically after each commit."""

    def __init__(self, path: Path, repo_id: str, revision: str | None):
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.files: dict[str, str] = data.get("files", {})
        self.meta = {"repo": repo_id, "revision": revision}

    def record(self, files: list[TreeFile]) -> None:
        self.files.update({f.path: f.sha256 for f in files})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {**self.meta, "files": self.files})

    def forget(self, paths: list[str]) -> None:
        for p in paths:
            self.files.pop(p, None)
        if self.path.parent.is_dir():
            write_json(self.path, {**self.meta, "files": self.files})


def ledger_path(run_dir: Path, repo_id: str, revision: str | None) -> Path:
    return run_dir / "push" / f"{repo_id.replace('/', '__')}@{revision or 'main'}.json"


def dir_ledger_path(run_dir: Path, target: Path) -> Path:
    where = str(target.resolve())
    return (
        run_dir
        / "push"
        / f"dir__{target.name}-{hashlib.blake2b(where.encode(), digest_size=6).hexdigest()}.json"
    )


class HubTarget:
    """A dataset repo (and branch) on the Hub, through an HfApi."""

    def __init__(self, api: Any, repo_id: str, revision: str | None = None, private: bool = False):
        self.api, self.repo_id, self.revision, self.private = api, repo_id, revision, private

    def prepare(self) -> set[str]:
        """Create the repo (and branch); the paths it holds."""
        self.api.create_repo(self.repo_id, repo_type=REPO_TYPE, private=self.private, exist_ok=True)
        if self.revision:
            self.api.create_branch(self.repo_id, branch=self.revision, repo_type=REPO_TYPE, exist_ok=True)
        return set(self.api.list_repo_files(self.repo_id, repo_type=REPO_TYPE, revision=self.revision))

    def same(self, files: list[TreeFile]) -> set[str]:
        """Paths whose remote content equals the local file (LFS sha256 or git blob id)."""
        if not files:
            return set()
        by_path = {f.path: f for f in files}
        same = set()
        infos = self.api.get_paths_info(
            self.repo_id, list(by_path), repo_type=REPO_TYPE, revision=self.revision
        )
        for info in infos:
            local = by_path.get(getattr(info, "path", ""))
            if local is None:
                continue
            lfs = getattr(info, "lfs", None)
            remote_sha = getattr(lfs, "sha256", None) if lfs is not None else None
            if remote_sha == local.sha256 or (
                lfs is None and getattr(info, "blob_id", None) == local.git_blob_id()
            ):
                same.add(local.path)
        return same

    def commit(self, add: list[TreeFile], delete: list[str], message: str) -> None:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        operations = [
            *(CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.source)) for f in add),
            *(CommitOperationDelete(path_in_repo=p) for p in delete),
        ]
        self.api.create_commit(
            self.repo_id, operations, commit_message=message, repo_type=REPO_TYPE, revision=self.revision
        )


def copy_file(source: Path, dest: Path) -> None:
    """Copy through `<dest>.partial` and a rename: a kill never leaves a truncated file named `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + PARTIAL)
    shutil.copyfile(source, partial)
    os.replace(partial, dest)


class DirTarget:
    """A local directory that receives exactly the tree a push uploads."""

    def __init__(self, root: Path):
        self.root = root

    def prepare(self) -> set[str]:
        """Create the directory; the paths it holds. Refuses a directory with anything but a tree."""
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.rglob(f"*{PARTIAL}"):  # a copy cut off by a kill: never a tree file
            leftover.unlink()
        foreign = sorted(p.name for p in self.root.iterdir() if p.name not in (*MANAGED, CARD))
        if foreign:
            raise PushError(
                f"--to-dir {self.root} holds files that are not a pushed tree ({', '.join(foreign[:5])}): "
                "give a new or empty directory, or one an earlier --to-dir wrote"
            )
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}

    def same(self, files: list[TreeFile]) -> set[str]:
        return {f.path for f in files if _file(f.path, self.root / f.path).sha256 == f.sha256}

    def commit(self, add: list[TreeFile], delete: list[str], message: str) -> None:
        for f in add:
            copy_file(f.source, self.root / f.path)
        for p in delete:
            (self.root / p).unlink()


def _batches(files: list[TreeFile]) -> Iterator[list[TreeFile]]:
    batch: list[TreeFile] = []
    size = 0
    for f in files:
        if batch and (len(batch) >= COMMIT_FILES or size + f.size > COMMIT_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += f.size
    if batch:
        yield batch


def publish(tree: list[TreeFile], target: HubTarget | DirTarget, ledger: Ledger) -> dict[str, Any]:
    """Bring `target` to exactly `tree`: send what is missing (shards first, card last), delete stale
    files in the folders the push owns; returns counts."""
    present = target.prepare()
    done = {f.path for f in tree if f.path in present and ledger.files.get(f.path) == f.sha256}
    confirmed = target.same([f for f in tree if f.path in present and f.path not in done])
    ledger.record([f for f in tree if f.path in confirmed])
    todo = [f for f in tree if f.path not in done | confirmed]
    commits = 0
    for batch in _batches([f for f in todo if f.path != CARD]):
        target.commit(batch, [], f"longcot: upload {len(batch)} file(s) ({batch[0].path} …)")
        ledger.record(batch)
        commits += 1
    wanted = {f.path for f in tree}
    stale = sorted(p for p in present if p.split("/")[0] in MANAGED and p not in wanted)
    if stale:
        target.commit([], stale, f"longcot: delete {len(stale)} stale file(s)")
        ledger.forget(stale)
        commits += 1
    card = [f for f in todo if f.path == CARD]
    if card:
        target.commit(card, [], "longcot: dataset card")
        ledger.record(card)
        commits += 1
    return {
        "files": len(tree),
        "uploaded": len(todo),
        "skipped": len(tree) - len(todo),
        "deleted": len(stale),
        "commits": commits,
    }


def push(
    tree: list[TreeFile],
    repo_id: str,
    api: Any,
    ledger: Ledger,
    private: bool = False,
    revision: str | None = None,
) -> dict[str, Any]:
    """Publish to a Hub dataset repo (created, with its branch, when missing)."""
    return publish(tree, HubTarget(api, repo_id, revision, private), ledger)


def write_tree(tree: list[TreeFile], target: Path, ledger: Ledger) -> dict[str, Any]:
    """Publish to a directory: exactly what a push would upload; resumes like the Hub push."""
    return publish(tree, DirTarget(target), ledger)
