"""The run store: Parquet shards on disk, one directory per stage, and the checks that keep it honest.

    <stage_dir>/kept/part-00000.parquet ...      rows that go on
    <stage_dir>/dropped/part-00000.parquet ...   rows set aside, with `drop_reason` and `drop_detail`
    <stage_dir>/report.json                      counts, reasons, timings, stage details

The runner (stages/runner.py) writes a stage into `<stage_dir>.partial/` and renames the directory
into place only when the invariant rows_in == kept + dropped holds, so a killed stage never leaves a
half-written result that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from stages.arrays import unique_sorted

DEFAULT_SHARD_ROWS = 100_000
READ_BATCH_ROWS = 200_000
# Parquet row groups of a shard: reading chosen rows back (`take_rows`: the near-dup pair check, the
# reports) decodes only the groups that hold them, one group at a time, so a reader's memory follows
# the group, not the shard (a 50k-row read from a 1M-row stage: +96 MB instead of +270 MB)
ROW_GROUP_ROWS = 16_384


class InvariantError(RuntimeError):
    """A stage lost or invented rows: rows in != rows kept + rows dropped."""


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class ShardWriter:
    """Buffers frames and writes a Parquet shard each time `rows_per_shard` rows have accumulated.

    Shards are compressed and written on a background thread (polars releases the GIL while it
    encodes), so the stage computes the next batch meanwhile; at most one shard is in flight, which
    keeps memory at about two shards.
    """

    def __init__(self, directory: Path, rows_per_shard: int = DEFAULT_SHARD_ROWS, prefix: str = ""):
        self.directory = directory
        self.prefix = prefix  # the runner names shards by unit (part-00003-00000), so order is input order
        self.rows_per_shard = rows_per_shard
        self.rows = 0
        self.shards = 0
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._pending: Future[None] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        if df.height < self.rows_per_shard // 10:
            # A few rows filtered out of a large batch still reference the batch's string buffers
            # (polars string views); buffered for long, they would hold every batch in memory.
            # A copy through Arrow keeps only their own bytes.
            df = pl.from_arrow(df.to_arrow())  # type: ignore[assignment]
        self._buffer.append(df)
        self._buffered += df.height
        self.rows += df.height
        if self._buffered >= self.rows_per_shard:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        frame = pl.concat(self._buffer, how="vertical_relaxed")
        path = self.directory / f"part-{self.prefix}{self.shards:05d}.parquet"
        self._wait()
        self._pending = self._pool.submit(
            frame.write_parquet, path, compression="zstd", compression_level=1, row_group_size=ROW_GROUP_ROWS
        )
        self.shards += 1
        self._buffer, self._buffered = [], 0

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()  # re-raises a failed write here, in the stage's thread
            self._pending = None

    def close(self) -> int:
        try:
            self._flush()
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
        return self.rows

    def abort(self) -> None:
        """Stop without flushing (the stage failed); a write still in flight is awaited, not raised."""
        self._buffer = []
        self._pool.shutdown(wait=True)


def shard_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []


def read_shards(
    directory: Path, columns: list[str] | None = None, batch_rows: int = READ_BATCH_ROWS
) -> Iterator[pl.DataFrame]:
    """Stream the rows of a shard directory in bounded batches (memory does not grow with the data)."""
    for path in shard_paths(directory):
        yield from stream_parquet(path, columns, batch_rows)


def stream_parquet(
    path: Path, columns: list[str] | None, batch_rows: int, start: int = 0, rows: int | None = None
) -> Iterator[pl.DataFrame]:
    """Rows [start, start + rows) of a Parquet file (all by default) in slices of `batch_rows`. Each
    slice is its own polars query, which reads only the row groups it needs: measured 3x faster than
    pyarrow's `iter_batches`, and flat in memory, where polars' `collect_batches` read ahead and held
    most of a 2M-row file."""
    total = pq.ParquetFile(path).metadata.num_rows
    end = total if rows is None else min(total, start + rows)
    frame = pl.scan_parquet(path)
    if columns:
        frame = frame.select(columns)
    for offset in range(start, end, batch_rows):
        yield frame.slice(offset, min(batch_rows, end - offset)).collect()


def shard_columns(directory: Path) -> list[str]:
    """Column names of a shard directory (from the first shard's footer; [] when it has none)."""
    paths = shard_paths(directory)
    return list(pl.read_parquet_schema(paths[0])) if paths else []


def count_rows(directory: Path) -> int:
    """Rows in a shard directory, from Parquet footers only."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in shard_paths(directory))


def fingerprint(directory: Path) -> str:
    """Content hash of a shard directory: equal data gives an equal fingerprint, whatever the mtimes."""
    digest = hashlib.blake2b(digest_size=16)
    for path in shard_paths(directory):
        digest.update(path.name.encode())
        with path.open("rb") as f:
            digest.update(hashlib.file_digest(f, "blake2b").digest())
    return digest.hexdigest()


def load_report(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "report.json"
    return read_json(path) if path.is_file() else None


def take_rows(input_dir: Path, rows: np.ndarray, columns: list[str]) -> pl.DataFrame:
    """`idx` plus `columns` of the given row indices, in the order given: each Parquet row group that
    holds some of them is decoded once, on its own, and only those rows are kept."""
    rows = np.asarray(rows, dtype=np.int64)
    wanted = unique_sorted(rows)
    parts, offset = [], 0
    for path in shard_paths(input_dir):
        shard = pq.ParquetFile(path)
        for group in range(shard.num_row_groups):
            size = shard.metadata.row_group(group).num_rows
            local = wanted[np.searchsorted(wanted, offset) : np.searchsorted(wanted, offset + size)] - offset
            if local.size:
                table = shard.read_row_group(group, columns=columns).take(local)
                parts.append(pl.from_arrow(table).with_columns(pl.Series("idx", local + offset)))
            offset += size
    if not parts:  # no row asked for (or none there): the columns still exist, empty
        paths = shard_paths(input_dir)
        schema = pl.read_parquet_schema(paths[0]) if paths else {}
        parts = [pl.DataFrame(schema={**{c: schema.get(c, pl.Null) for c in columns}, "idx": pl.Int64})]
    found = pl.concat(parts, how="vertical_relaxed")
    return pl.Series("idx", rows).to_frame().join(found, on="idx", how="left", maintain_order="left")
