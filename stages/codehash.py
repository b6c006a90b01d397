"""Code versions from the import graph: a stage's version is the hash of every project module it
imports, transitively, and of the data files those modules name.

Why not a hand-kept list: a helper two imports away (stages/dedup/policy.py under exact dedup) changes
what a stage keeps as surely as the stage's own file, and a list forgets it. Imports are read with
`ast` (lazy imports inside functions count: they are code the stage runs), resolved to files of the
project's packages; a package's non-Python files (prompt templates) and files of `data/` whose names
appear as string constants in a module are hashed with it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stages", "prompts", "flows")
DATA_DIR = "data"


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of a project module (`stages.dedup.policy`), or None for anything else."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Project modules named by the import statements of one file (absolute and relative)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    names = set()
    for name in found:
        parts = name.split(".")
        # every enclosing package runs its __init__ too
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {n for n in names if module_file(n, root) is not None}


def data_files(path: Path, root: Path = ROOT) -> set[Path]:
    """Files of `data/` whose names a module spells out in a string constant (registries, mappings)."""
    directory = root / DATA_DIR
    if not directory.is_dir():
        return set()
    names = {p.name: p for p in directory.iterdir() if p.is_file()}
    tree = ast.parse(path.read_bytes(), filename=str(path))
    return {
        names[node.value]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    }


def closure(modules: list[str], root: Path = ROOT) -> list[Path]:
    """Every file a set of modules depends on: their sources, transitively imported project modules,
    the non-Python files of their packages, and the data files they name. Sorted, for hashing."""
    seen: set[str] = set()
    todo = list(modules)
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        path = module_file(name, root)
        if name in seen or path is None:
            continue
        seen.add(name)
        files.add(path)
        files.update(data_files(path, root))
        files.update(p for p in path.parent.iterdir() if p.is_file() and p.suffix in (".md", ".txt", ".yaml"))
        todo.extend(imported_modules(path, root) - seen)
    return sorted(files)


@cache
def code_version(*modules: str, root: Path = ROOT) -> str:
    """A short hash of everything `modules` run (see `closure`): equal code gives an equal version."""
    digest = hashlib.blake2b(digest_size=8)
    for path in closure(list(modules), root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
