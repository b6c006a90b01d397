"""Publish a run's exported sets and card: the tree, `--to-dir`, and a resumable push to the Hub.

The tree (what is uploaded, and exactly what `--to-dir` writes):
    README.md                                the card (runs/<run>/card/README.md, rewritten first)
    images/<chart>.png                       the card's histograms
    sft/<split>-00000-of-0000N.parquet       from <NN-export>/sft/<split>/part-*.parquet
    rl/<split>-00000-of-0000N.parquet        from <NN-export>/rl/<split>/part-*.parquet

Resume: files go up in commits of a few files (shards first, the card last, so the card never names
shards that are not there). After each commit the files are recorded, with their sha256, in a ledger
under the run (runs/<run>/push/<repo>@<revision>.json). A push started again skips what the ledger
records and the repo still has, and asks the Hub about files it has but the ledger does not know
(an interruption between a commit and the ledger write): a remote file with the same content
(LFS sha256, or git blob id for small files) is not uploaded again. Shards the tree no longer has
(an earlier push with more shards) are deleted, so no stale shard is left to duplicate rows.

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


class PushError(RuntimeError):
    """A push that cannot start (no export, no token, a non-empty --to-dir)."""


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


def write_tree(tree: list[TreeFile], target: Path) -> None:
    """Copy the tree into an empty (or new) directory: exactly what a push would upload."""
    if target.exists() and any(target.iterdir()):
        raise PushError(f"--to-dir {target} is not empty; give a new or empty directory")
    for f in tree:
        dest = target / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.source, dest)


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


def _same_remote(api: Any, repo_id: str, revision: str | None, files: list[TreeFile]) -> set[str]:
    """Paths whose remote content equals the local file (LFS sha256 or git blob id)."""
    if not files:
        return set()
    by_path = {f.path: f for f in files}
    same = set()
    for info in api.get_paths_info(repo_id, list(by_path), repo_type=REPO_TYPE, revision=revision):
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


def push(
    tree: list[TreeFile],
    repo_id: str,
    api: Any,
    ledger: Ledger,
    private: bool = False,
    revision: str | None = None,
) -> dict[str, Any]:
    """Create the repo (and branch), upload what is missing, delete stale shards; returns counts."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type=REPO_TYPE, exist_ok=True)
    remote = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=revision))
    done = {f.path for f in tree if f.path in remote and ledger.files.get(f.path) == f.sha256}
    unknown = [f for f in tree if f.path in remote and f.path not in done]
    confirmed = _same_remote(api, repo_id, revision, unknown)
    ledger.record([f for f in unknown if f.path in confirmed])
    todo = [f for f in tree if f.path not in done | confirmed]
    commits = 0
    for batch in _batches([f for f in todo if f.path != CARD]):
        api.create_commit(
            repo_id,
            [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.source)) for f in batch],
            commit_message=f"longcot: upload {len(batch)} file(s) ({batch[0].path} …)",
            repo_type=REPO_TYPE,
            revision=revision,
        )
        ledger.record(batch)
        commits += 1
    wanted = {f.path for f in tree}
    stale = sorted(p for p in remote if p.split("/")[0] in MANAGED and p not in wanted)
    if stale:
        api.create_commit(
            repo_id,
            [CommitOperationDelete(path_in_repo=p) for p in stale],
            commit_message=f"longcot: delete {len(stale)} stale file(s)",
            repo_type=REPO_TYPE,
            revision=revision,
        )
        ledger.forget(stale)
        commits += 1
    card = [f for f in todo if f.path == CARD]
    if card:
        api.create_commit(
            repo_id,
            [CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=str(card[0].source))],
            commit_message="longcot: dataset card",
            repo_type=REPO_TYPE,
            revision=revision,
        )
        ledger.record(card)
        commits += 1
    return {
        "files": len(tree),
        "uploaded": len(todo),
        "skipped": len(tree) - len(todo),
        "deleted": len(stale),
        "commits": commits,
    }
