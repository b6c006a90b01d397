"""`longcot push RUN --repo ORG/NAME`: publish a run's SFT/RL shards and card to the Hugging Face Hub.

`--to-dir DIR` writes the exact tree a push would upload (no network, no token): inspect it, or
`datasets.load_dataset(DIR, "sft")` it. Into an earlier --to-dir it resumes like the Hub push. The token is read from HF_TOKEN only and never shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli_common import guarded
from flows.console import console


def register(app: typer.Typer) -> None:
    """Add the `push` command to the longcot CLI."""

    @app.command("push")
    @guarded
    def push_command(
        run_dir: Annotated[Path, typer.Argument(help="a finished run, e.g. runs/quickstart")],
        repo: Annotated[str | None, typer.Option("--repo", help="dataset repo id, ORG/NAME")] = None,
        private: Annotated[bool, typer.Option("--private", help="create the repo private")] = False,
        revision: Annotated[str | None, typer.Option(help="branch to push to (created if missing)")] = None,
        to_dir: Annotated[
            Path | None,
            typer.Option("--to-dir", help="write the tree here instead of pushing (resumes an earlier one)"),
        ] = None,
    ) -> None:
        """Upload the exported sets and the dataset card (resumable), or write them to a directory."""
        from flows.push import Ledger, build_tree, dir_ledger_path, hf_api, ledger_path, push, write_tree

        if to_dir is None and not repo:
            raise typer.BadParameter("give --repo ORG/NAME (or --to-dir DIR)", param_hint="--repo")
        if repo and repo.count("/") != 1:
            raise typer.BadParameter(f"expected ORG/NAME, got {repo!r}", param_hint="--repo")
        tree = build_tree(run_dir)
        size = sum(f.size for f in tree)
        if to_dir is not None:
            ledger = Ledger(dir_ledger_path(run_dir, to_dir), str(to_dir.resolve()), None)
            result = write_tree(tree, to_dir, ledger)
            console.print(
                f"{to_dir}: {len(tree)} files ({size / 1e6:.1f} MB): {result['uploaded']} copied, "
                f"{result['skipped']} already there, {result['deleted']} stale deleted",
                soft_wrap=True,
            )
            for f in tree:
                console.print(f"  {f.path}  {f.size:,} B", highlight=False)
            return
        assert repo is not None
        api = hf_api()
        ledger = Ledger(ledger_path(run_dir, repo, revision), repo, revision)
        with console.status(f"pushing {len(tree)} files ({size / 1e6:.1f} MB) to {repo} …"):
            result = push(tree, repo, api, ledger, private=private, revision=revision)
        console.print(
            f"{repo}@{revision or 'main'}: {result['uploaded']} uploaded, {result['skipped']} already there, "
            f"{result['deleted']} stale deleted, {result['commits']} commit(s)",
            soft_wrap=True,
        )
