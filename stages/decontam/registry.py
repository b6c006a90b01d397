"""The benchmark registry (data/benchmarks.yaml): which evaluation sets exist and how to load them.

A benchmark is loaded with the collection stage's own reader (`read_source`), from a local JSONL file
(`--benchmark-dir` / $LONGCOT_BENCHMARK_DIR) or from the Hugging Face Hub: one loader, two sources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field

from stages.collect import FieldMap, HubSource, SourceSpec
from stages.collect.readers import read_source

REGISTRY_FILE = Path(__file__).resolve().parents[2] / "data" / "benchmarks.yaml"
ENV_DIR = "LONGCOT_BENCHMARK_DIR"
# A benchmark's own id, where the registry names none: the first of these present in the row.
ID_CANDIDATES = ("unique_id", "id", "task_id", "question_id", "idx", "problem_id", "name")
ITEM_SCHEMA: dict[str, pl.DataType] = {
    "benchmark": pl.String(),
    "benchmark_id": pl.String(),
    "problem": pl.String(),
    "domain": pl.String(),
}


class RegistryError(ValueError):
    """An unknown benchmark name, a missing file, or an entry that cannot be loaded."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubBenchmark(Strict):
    """Where a benchmark lives on the Hugging Face Hub and how its fields map."""

    dataset: str
    config: str | None = None
    split: str = "test"
    fields: dict[str, str | None] = Field(
        default_factory=dict, description="FieldMap overrides (problem, ...)"
    )
    id_field: str | None = None
    data_files: str | list[str] | None = None
    revision: str | None = None


class BenchmarkEntry(Strict):
    """One evaluation set: a local file (+ mappings.yaml preset) for offline use, a Hub dataset for online."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str = ""
    domain: str = Field("math", description="math|code|science|...; code items are compared without I/O text")
    file: str | None = Field(None, description="file name in the benchmark directory, or an absolute path")
    preset: str | None = Field(None, description="field mapping preset in data/mappings.yaml")
    fields: dict[str, str | None] = Field(default_factory=dict, description="FieldMap overrides")
    id_field: str | None = Field(None, description="top-level field holding the item id (default: detected)")
    hf: HubBenchmark | None = None

    def local_spec(self, benchmark_dir: Path | None) -> SourceSpec:
        if self.file is None:
            raise RegistryError(
                f"benchmark {self.name!r} has no local file; use the Hub (no --benchmark-dir)"
            )
        path = Path(self.file)
        if not path.is_absolute():
            if benchmark_dir is None:
                raise RegistryError(
                    f"benchmark {self.name!r}: relative file {self.file!r} needs --benchmark-dir"
                )
            path = benchmark_dir / path
        if not path.is_file():
            raise RegistryError(
                f"benchmark {self.name!r}: no file {path} (check --benchmark-dir or ${ENV_DIR})"
            )
        spec: dict[str, Any] = {
            "name": self.name,
            "path": path,
            "fields": self.fields,
            "domain": _domain(self),
        }
        if self.preset:
            spec["preset"] = self.preset
        else:
            spec["fields"] = {**FieldMap().model_dump(), **self.fields}
        return SourceSpec.model_validate(spec)

    def hub_spec(self) -> SourceSpec:
        if self.hf is None:
            raise RegistryError(f"benchmark {self.name!r} has no Hub dataset; give --benchmark-dir")
        hub = HubSource(
            dataset=self.hf.dataset,
            config=self.hf.config,
            split=self.hf.split,
            data_files=self.hf.data_files,
            revision=self.hf.revision,
        )
        fields = {**FieldMap().model_dump(), **self.hf.fields}
        return SourceSpec(name=self.name, hf=hub, fields=FieldMap(**fields), domain=_domain(self))  # type: ignore[arg-type]


def _domain(entry: BenchmarkEntry) -> str:
    return entry.domain if entry.domain in ("math", "code", "science", "puzzle", "general") else "general"


@cache
def _builtin() -> dict[str, BenchmarkEntry]:
    return read_registry(REGISTRY_FILE)


def read_registry(path: Path) -> dict[str, BenchmarkEntry]:
    """Entries of a registry YAML ({benchmarks: {name: entry}}), in file order."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"cannot read benchmark registry {path}: {exc}") from None
    return {name: BenchmarkEntry(name=name, **body) for name, body in (raw.get("benchmarks") or {}).items()}


def registry(
    extra_file: Path | None = None, extra: list[BenchmarkEntry] | None = None
) -> dict[str, BenchmarkEntry]:
    """The built-in registry, extended (or overridden by name) by a user YAML and ad-hoc entries."""
    entries = dict(_builtin())
    if extra_file is not None:
        entries.update(read_registry(extra_file))
    entries.update({e.name: e for e in extra or []})
    return entries


def parse_benchmark_file(text: str) -> BenchmarkEntry:
    """`NAME=PATH[:FIELD]` (CLI) -> an ad-hoc entry; the problem field defaults to `problem`."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise RegistryError(f"--benchmark-file {text!r}: expected NAME=PATH or NAME=PATH:FIELD")
    path, _, problem = rest.partition(":") if not Path(rest).is_file() else (rest, "", "")
    entry = {"name": name, "file": str(Path(path).resolve()), "fields": {"problem": problem or "problem"}}
    return BenchmarkEntry.model_validate(entry)


def resolve_dir(benchmark_dir: Path | None) -> Path | None:
    """The local benchmark directory: the option, else $LONGCOT_BENCHMARK_DIR, else None (the Hub)."""
    if benchmark_dir is None and os.environ.get(ENV_DIR):
        benchmark_dir = Path(os.environ[ENV_DIR])
    if benchmark_dir is not None and not benchmark_dir.is_dir():
        raise RegistryError(f"benchmark directory {benchmark_dir} does not exist")
    return benchmark_dir


def select(entries: dict[str, BenchmarkEntry], names: list[str] | None) -> list[BenchmarkEntry]:
    """The named entries (all when `names` is empty), with one clear error for unknown names."""
    if not names:
        return list(entries.values())
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise RegistryError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(entries)}")
    return [entries[n] for n in dict.fromkeys(names)]


@dataclass
class BenchmarkSet:
    """The loaded items of several benchmarks, one row each (`selected`: audited, else loaded only for
    the statistics), where each audited benchmark came from, and the statistics' other benchmarks."""

    items: pl.DataFrame
    origins: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: dict[str, dict[str, Any]] = field(default_factory=dict)  # loaded for the statistics only
    missing: dict[str, str] = field(default_factory=dict)  # name -> why it could not be loaded

    @property
    def names(self) -> list[str]:
        return list(self.origins)

    def narrowed(self, names: set[str]) -> BenchmarkSet:
        """The same items with `names` audited (`selected`) and every other one kept for the statistics."""
        unloadable = sorted(names & set(self.missing))
        if unloadable:
            raise RegistryError(f"benchmark {unloadable[0]!r}: {self.missing[unloadable[0]]}")
        every = {**self.origins, **self.reference}
        return BenchmarkSet(
            items=self.items.with_columns(pl.col("benchmark").is_in(list(names)).alias("selected")),
            origins={n: o for n, o in every.items() if n in names},
            reference={n: o for n, o in every.items() if n not in names},
            missing=self.missing,
        )


def load_entry(entry: BenchmarkEntry, benchmark_dir: Path | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Items of one benchmark (ITEM_SCHEMA) and its origin {location, source, rows, skipped}."""
    spec = (
        entry.local_spec(benchmark_dir) if benchmark_dir is not None or _is_abs(entry) else entry.hub_spec()
    )
    id_field = entry.id_field if spec.path is not None else (entry.hf.id_field if entry.hf else None)
    try:
        frames = list(read_source(spec, batch_rows=50_000))
    except Exception as exc:
        raise RegistryError(f"benchmark {entry.name!r}: {exc}") from None
    mapped = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(schema={"problem": pl.String, "meta": pl.String, "row": pl.Int64})
    )
    usable = mapped.filter(pl.col("problem").is_not_null() & (pl.col("problem").str.strip_chars() != ""))
    items = usable.select(
        pl.lit(entry.name).alias("benchmark"),
        _id_expr(usable, id_field).alias("benchmark_id"),
        pl.col("problem"),
        pl.lit(_domain(entry)).alias("domain"),
    )
    origin = {
        "title": entry.title or entry.name,
        "source": "local" if spec.path is not None else "hub",
        "location": str(spec.path) if spec.path is not None else _hub_location(entry),
        "rows": items.height,
        "skipped": mapped.height - usable.height,
    }
    return items, origin


def _is_abs(entry: BenchmarkEntry) -> bool:
    return entry.file is not None and Path(entry.file).is_absolute()


def _hub_location(entry: BenchmarkEntry) -> str:
    assert entry.hf is not None
    return (
        f"hf://{entry.hf.dataset}"
        + (f"/{entry.hf.config}" if entry.hf.config else "")
        + f"[{entry.hf.split}]"
    )


def _id_expr(mapped: pl.DataFrame, id_field: str | None) -> pl.Expr:
    """The item id: the named (or first detected) id field of the source row, else the row number."""
    row = pl.col("row").cast(pl.String)
    if mapped.height == 0:
        return row
    candidates = [id_field] if id_field else list(ID_CANDIDATES)
    for name in candidates:
        ids = mapped.select(pl.col("meta").str.json_path_match(f"$['{name}']")).to_series()
        if ids.null_count() == 0 and ids.n_unique() == mapped.height:
            return pl.col("meta").str.json_path_match(f"$['{name}']")
        if id_field:
            return pl.coalesce(pl.col("meta").str.json_path_match(f"$['{name}']"), row)
    return row


def load_benchmarks(
    names: list[str] | None = None,
    benchmark_dir: Path | None = None,
    registry_file: Path | None = None,
    extra: list[BenchmarkEntry] | None = None,
    reference: bool = False,
) -> BenchmarkSet:
    """Load the selected benchmarks (all by default) from the benchmark directory or the Hub.

    With `reference`, every other registry entry is loaded too (items with `selected` false): the
    decontamination statistics (which phrases are boilerplate) come from the whole registry, so that
    selecting benchmarks only filters what is reported. An unselected entry that cannot be loaded is
    skipped and named in `missing`; after one unselected Hub entry fails, or with HF_HUB_OFFLINE, the
    other unselected Hub entries are not tried (each failure costs ~25 s of retries offline)."""
    directory = resolve_dir(benchmark_dir)
    entries = registry(registry_file, extra)
    chosen = {e.name for e in select(entries, names)}
    frames, origins, missing = [], {}, {}
    hub_down = _hub_offline()
    for entry in entries.values():
        if entry.name in chosen:
            items, origins[entry.name] = load_entry(entry, directory)
        elif not reference:
            continue
        else:
            from_hub = directory is None and not _is_abs(entry)
            if from_hub and hub_down:
                missing[entry.name] = hub_down
                continue
            try:
                items, origins[entry.name] = load_entry(entry, directory)
            except RegistryError as exc:
                missing[entry.name] = str(exc)
                hub_down = hub_down or (
                    f"not tried: {entry.name} could not be loaded from the Hub" if from_hub else ""
                )
                continue
        frames.append(items)
    items = pl.concat(frames) if frames else pl.DataFrame(schema=ITEM_SCHEMA)
    return BenchmarkSet(items=items, origins=origins, missing=missing).narrowed(chosen)


def _hub_offline() -> str:
    """Why unselected Hub benchmarks are not tried ("" when they are): HF_HUB_OFFLINE, read now."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    return "not tried: HF_HUB_OFFLINE is set" if flag or constants.HF_HUB_OFFLINE else ""


def resource_files(
    benchmarks: list[str],
    benchmark_dir: Path | None,
    registry_file: Path | None,
    extra: list[BenchmarkEntry] | None = None,
) -> list[Path]:
    """The files whose content decides a decontamination result besides its input: the registry
    YAMLs, the local benchmark files selected, and the other local registry files (they decide the
    boilerplate statistics). Part of the stage's cache key."""
    files = [REGISTRY_FILE, *([registry_file] if registry_file else [])]
    local_dir = resolve_dir(benchmark_dir)
    entries = registry(registry_file, extra)
    chosen = {e.name for e in select(entries, benchmarks)}
    for entry in entries.values():
        if entry.file is None or (local_dir is None and not Path(entry.file).is_absolute()):
            continue
        if entry.name in chosen:
            files.append(entry.local_spec(local_dir).path)  # type: ignore[arg-type]
        elif (path := Path(entry.file) if local_dir is None else local_dir / entry.file).is_file():
            files.append(path)
    return files
