"""The benchmark side of matching: every registry benchmark loaded, normalised and n-gram indexed,
built once per content and kept on disk.

Loading 16 benchmarks through the collection reader, normalising their ~10k items and indexing their
n-grams takes seconds on every run: fixed cost that a small audit pays in full. The result depends only
on the benchmark files, the registry and mappings that read them, the index settings (n, max_item_df,
fold_letters) and this code, so it is stored under a key of their content
(`$LONGCOT_CACHE_DIR/decontam`, else `~/.cache/longcot/decontam`; `cache_dir` in the stage config) and
reused until one of them changes. Local benchmark files are keyed before anything is read; benchmarks
from the Hub are loaded first and keyed by their items. The selection of audited benchmarks is applied
after loading (`BenchmarkSet.narrowed`): the cached reference is the same whichever are audited.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
from xxhash import xxh3_64

from stages.collect.spec import MAPPINGS_FILE
from stages.decontam.config import DecontamConfig
from stages.decontam.ngram import NgramIndex
from stages.decontam.registry import (
    REGISTRY_FILE,
    BenchmarkSet,
    load_benchmarks,
    registry,
    resolve_dir,
    select,
)
from stages.decontam.text import match_text_expr, words_expr
from stages.text import canonical_text

# the code that turns benchmark files into items and an index: a change to it invalidates the cache
HERE = Path(__file__).parent
CODE = [HERE / f for f in ("text.py", "ngram.py", "registry.py", "reference.py")]
CODE += sorted((HERE.parent / "collect").glob("*.py"))
FORMAT = "2"
KEEP = 8  # newest cache entries kept


def prepare_items(benchmarks: BenchmarkSet) -> pl.DataFrame:
    """Benchmark items with their match text (code statements stripped), words and copy group."""
    return benchmarks.items.with_columns(
        match_text_expr(pl.col("problem"), pl.col("domain")).alias("match_text")
    ).with_columns(
        words_expr(pl.col("match_text")).alias("words"),
        canonical_text(pl.col("match_text")).alias("group"),
    )


def cache_root(config: DecontamConfig) -> Path:
    if config.cache_dir is not None:
        return config.cache_dir
    root = os.environ.get("LONGCOT_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "longcot") / "decontam"


def _settings(config: DecontamConfig) -> bytes:
    ng = config.ngram
    index = {
        "n": ng.n,
        "max_item_df": ng.max_item_df,
        "fold_letters": ng.fold_letters,
        "ngram": "ngram" in config.methods,
    }
    extra = [e.model_dump(mode="json") for e in config.extra_benchmarks]
    return json.dumps([FORMAT, index, extra], sort_keys=True).encode()


def file_key(config: DecontamConfig) -> str | None:
    """The key of the reference from file contents alone, or None when a benchmark would come from the
    Hub or an audited benchmark's file is missing (then loading says why)."""
    directory = resolve_dir(config.benchmark_dir)
    entries = registry(config.registry_file, config.extra_benchmarks)
    chosen = {e.name for e in select(entries, config.benchmarks or None)}
    digest = xxh3_64(_settings(config))
    digest.update(str(directory).encode())
    for path in [
        REGISTRY_FILE,
        MAPPINGS_FILE,
        *([config.registry_file] if config.registry_file else []),
        *CODE,
    ]:
        digest.update(path.read_bytes())
    for entry in entries.values():
        if entry.file is None or (directory is None and not Path(entry.file).is_absolute()):
            return None
        path = directory / entry.file if directory is not None else Path(entry.file)
        if not path.is_file() and entry.name in chosen:
            return None
        digest.update(f"{entry.name}\0{path}\0".encode())
        digest.update(path.read_bytes() if path.is_file() else b"\0missing")
    return digest.hexdigest()


def _items_key(config: DecontamConfig, loaded: BenchmarkSet) -> str:
    digest = xxh3_64(_settings(config))
    for path in [MAPPINGS_FILE, *CODE]:
        digest.update(path.read_bytes())
    digest.update(
        json.dumps([loaded.origins, loaded.reference, loaded.missing], sort_keys=True, default=str).encode()
    )
    for row in loaded.items.select("benchmark", "benchmark_id", "problem", "domain").iter_rows():
        digest.update("\0".join(map(str, row)).encode())
    return digest.hexdigest()


def load_reference(config: DecontamConfig) -> tuple[BenchmarkSet, pl.DataFrame, NgramIndex | None, bool]:
    """(benchmarks with the audited ones `selected`, prepared items, n-gram index or None, from cache)."""
    names = config.benchmarks or None
    key = file_key(config)
    if key is not None and (cached := _read(cache_root(config) / key)) is not None:
        loaded, items, index = cached
        chosen = {e.name for e in select(registry(config.registry_file, config.extra_benchmarks), names)}
        narrowed = loaded.narrowed(chosen)
        return narrowed, items.with_columns(narrowed.items["selected"]), index, True
    loaded = load_benchmarks(
        names, config.benchmark_dir, config.registry_file, config.extra_benchmarks, reference=True
    )
    key = key or _items_key(config, loaded)
    if (cached := _read(cache_root(config) / key)) is not None:
        _, items, index = cached
        return loaded, items.with_columns(loaded.items["selected"]), index, True
    items = prepare_items(loaded)
    index = None
    if "ngram" in config.methods:
        ng = config.ngram
        index = NgramIndex.build(items["words"], items["group"], ng.n, ng.max_item_df, ng.fold_letters)
    # a read-only or full cache directory costs the next run a rebuild, not this run
    with contextlib.suppress(OSError):
        _write(cache_root(config) / key, loaded, items, index)
    return loaded, items, index, False


def _read(path: Path) -> tuple[BenchmarkSet, pl.DataFrame, NgramIndex | None] | None:
    """A cached reference, or None when absent or unreadable (then it is rebuilt and rewritten)."""
    if not (path / "items.parquet").is_file():
        return None
    try:
        meta = json.loads((path / "benchmarks.json").read_text())
        items = pl.read_parquet(path / "items.parquet")
        index = NgramIndex.load(path / "index.npz") if (path / "index.npz").is_file() else None
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError):
        return None
    loaded = BenchmarkSet(
        items=items.drop("match_text", "words", "group"), origins=meta["origins"], missing=meta["missing"]
    )
    return loaded, items, index


def _write(path: Path, loaded: BenchmarkSet, items: pl.DataFrame, index: NgramIndex | None) -> None:
    """Write into a fresh directory, then rename: a concurrent run sees a whole entry or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    meta = {"origins": {**loaded.origins, **loaded.reference}, "missing": loaded.missing}
    (staging / "benchmarks.json").write_text(json.dumps(meta, default=str))
    items.drop("selected").write_parquet(staging / "items.parquet")
    if index is not None:
        index.save(staging / "index.npz")
    try:
        staging.rename(path)
    except OSError:  # another run wrote it first
        shutil.rmtree(staging, ignore_errors=True)
    entries = sorted(path.parent.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:  # settings or benchmark files that changed: their entries are dead
        shutil.rmtree(old, ignore_errors=True)
