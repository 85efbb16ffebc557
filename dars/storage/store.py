"""Writing and reading the observation and rewrite stores (hive-partitioned Parquet).

Public API::

    write_observations(root, rows, *, shard) -> WriteCounts
    scan_observations(root, **filters) -> pl.LazyFrame
    done_keys(root, dataset, split, model, *, shard=None) -> pl.DataFrame
    key_shards(root, dataset, split, model) -> pl.DataFrame
    write_rewrites(root, rows, *, shard, replace=False) -> RewriteCounts
    scan_rewrites(root, **filters) -> pl.LazyFrame
    rewrite_keys(root, dataset, split, *, shard=None) -> pl.DataFrame
    atomic_write_table(table, path)
    atomic_table_writer(path, schema) -> context manager yielding a ParquetWriter

Writes are atomic: the new content goes to a hidden temporary file in the target directory
(``.part-00003.parquet.<random>.tmp``), is fsynced, then ``os.replace``d over the target. A killed
process leaves at most such a temporary file, which every hive reader skips (leading ``.``, and
it does not end in ``.parquet``); the next write to that shard deletes it.

One shard file is written by one task at a time (one Prefect task per shard); an advisory
``flock`` on ``.part-NNNNN.parquet.lock`` makes the read-merge-replace cycle safe even if a retry
overlaps a task that has not died yet. Other shards of the partition are only read.

Every file is written with Parquet page checksums. Every reader takes its files from the one
file-set definition of :mod:`dars.storage.files` (``part-NNNNN.parquet`` in valid hive partition
directories; strays are never read) and reads each file through one handle with the checksums
verified, so the lazy scans are safe while a collection replaces shards, and a damaged file
raises ``DamagedFileError`` naming it (``dars status --repair`` quarantines it). Partition values
are always String, whatever they look like.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from polars.io.plugins import register_io_source

from dars.storage.files import (
    OBSERVATIONS,
    REWRITES,
    StoreKind,
    list_files,
    list_partition,
    read_shard_file,
)
from dars.storage.layout import RunLayout, StorageError, check_shard
from dars.storage.schemas import (
    OBSERVATION_COLUMNS,
    OBSERVATION_FILE_SCHEMA,
    OBSERVATION_KEY,
    OBSERVATION_PARTITION,
    OBSERVATION_POLARS_SCHEMA,
    REWRITE_COLUMNS,
    REWRITE_FILE_SCHEMA,
    REWRITE_KEY,
    REWRITE_PARTITION,
    REWRITE_POLARS_SCHEMA,
    validate_observations,
    validate_rewrites,
)

try:  # POSIX only; on other systems the one-writer-per-shard rule is not enforced.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_SCHEMA_META_KEY = b"dars.schema"
_OBS_META = {_SCHEMA_META_KEY: b"observations/1"}
_REW_META = {_SCHEMA_META_KEY: b"rewrites/1"}
# Key columns inside a partition's files (the partition columns live in the path).
_OBS_FILE_KEY = [k for k in OBSERVATION_KEY if k not in OBSERVATION_PARTITION]
_REW_FILE_KEY = [k for k in REWRITE_KEY if k not in REWRITE_PARTITION]


@dataclass(frozen=True)
class WriteCounts:
    """What ``write_observations`` did with the rows it was given.

    ``written_ok`` / ``written_error``: rows stored (new keys, or replacing an error row);
    ``skipped_ok``: rows dropped because their key is already stored with status ok.
    """

    written_ok: int = 0
    written_error: int = 0
    skipped_ok: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            self.written_ok + other.written_ok,
            self.written_error + other.written_error,
            self.skipped_ok + other.skipped_ok,
        )


@dataclass(frozen=True)
class RewriteCounts:
    """``written``: rows stored; ``skipped``: rows dropped because their key was already stored."""

    written: int = 0
    skipped: int = 0

    def __add__(self, other: RewriteCounts) -> RewriteCounts:
        return RewriteCounts(self.written + other.written, self.skipped + other.skipped)


# ------------------------------------------------------------------------------------------------
# low-level file operations
# ------------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A hidden temp file beside ``path`` (leading ``.``, ending ``.tmp``) to write into; when the
    block exits without an exception it is fsynced and renamed over ``path``, else removed:
    readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on the temp file of :func:`_atomic_file`: ``path`` appears whole or not."""
    with _atomic_file(path) as f:
        write(f)


def atomic_write_table(
    table: pa.Table, path: str | Path, *, metadata: Mapping[bytes, bytes] | None = None
) -> None:
    """Write ``table`` to ``path`` as Parquet, atomically (see ``_atomic_write``)."""
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    # Page checksums let every reader detect flipped bytes instead of returning changed values.
    _atomic_write(
        path,
        lambda f: pq.write_table(table, f, compression="zstd", write_page_checksum=True),
    )


@contextlib.contextmanager
def atomic_table_writer(
    path: str | Path,
    schema: pa.Schema,
    *,
    metadata: Mapping[bytes, bytes] | None = None,
    use_dictionary: bool | Sequence[str] = True,
) -> Iterator[pq.ParquetWriter]:
    """A Parquet writer for a table written in batches (``writer.write_table(batch)``), with
    the options and atomicity of :func:`atomic_write_table`: the file appears at ``path`` when
    the block exits without an exception, never partly written. ``use_dictionary``: the
    columns to dictionary-encode (an encoding choice: what is read back is the same)."""
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    with (
        _atomic_file(path) as f,
        pq.ParquetWriter(
            f,
            schema,
            compression="zstd",
            write_page_checksum=True,
            use_dictionary=use_dictionary,  # type: ignore[arg-type]
        ) as writer,
    ):
        yield writer


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write ``text`` (UTF-8) to ``path``, atomically (see ``_atomic_write``)."""
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path``, atomically (see ``_atomic_write``)."""
    _atomic_write(path, lambda f: f.write(data))


@contextlib.contextmanager
def _shard_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    with open(lock, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            # Holding the lock means no other writer of this shard is mid-write, so any temporary
            # file of this shard is a leftover of a killed process.
            for stale in path.parent.glob(f".{path.name}.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_file(
    path: Path, file_schema: pa.Schema, columns: Sequence[str] | None = None
) -> pl.DataFrame | None:
    """One shard file through one handle, checksums verified (see :func:`read_shard_file`)."""
    return read_shard_file(path, file_schema, columns)


def _to_arrow(df: pl.DataFrame, file_schema: pa.Schema) -> pa.Table:
    # polars exports large_string/string_view; cast to the declared schema so every file has the
    # exact same physical types whatever polars version wrote it.
    table = df.select(file_schema.names).to_arrow(compat_level=pl.CompatLevel.oldest())
    return table.cast(file_schema)


def _partitions(
    df: pl.DataFrame, cols: Sequence[str]
) -> Iterator[tuple[dict[str, Any], pl.DataFrame]]:
    for part in df.partition_by(list(cols), maintain_order=True):
        values = part.select(cols).row(0, named=True)
        yield values, part.drop(list(cols))


def _shard_files(partition_dir: Path) -> list[tuple[int, Path]]:
    """The shard files of one partition (the store's file set, see :mod:`dars.storage.files`);
    raises DamagedFileError if something other than a file sits where a shard file should be."""
    files = list_partition(partition_dir)
    files.raise_damaged()
    return [(f.shard, f.path) for f in files.parts]


# ------------------------------------------------------------------------------------------------
# observations
# ------------------------------------------------------------------------------------------------
def _sibling_ok_keys(partition_dir: Path, shard: int) -> pl.DataFrame | None:
    """Keys stored with status ok in the partition's other shards (only key columns are read;
    each file through one handle, since other tasks may be replacing those shards)."""
    frames = [
        f.filter(pl.col("status") == "ok").select(_OBS_FILE_KEY)
        for f in (
            _read_file(p, OBSERVATION_FILE_SCHEMA, [*_OBS_FILE_KEY, "status"])
            for s, p in _shard_files(partition_dir)
            if s != shard
        )
        if f is not None
    ]
    return pl.concat(frames) if frames else None


def _merge_observations(path: Path, new: pl.DataFrame, shard: int) -> WriteCounts:
    """Merge validated rows of one partition (partition columns dropped) into one shard file."""
    key = _OBS_FILE_KEY
    siblings = _sibling_ok_keys(path.parent, shard)
    skipped = 0
    if siblings is not None and siblings.height:
        before = new.height
        new = new.join(siblings, on=key, how="anti")
        skipped += before - new.height
    existing = _read_file(path, OBSERVATION_FILE_SCHEMA)
    if existing is None:
        accepted = new
        merged = new
    else:
        old = existing.select(
            *key, pl.col("status").alias("__old_status"), pl.col("attempts").alias("__old_att")
        )
        joined = new.join(old, on=key, how="left")
        keep_old = pl.col("__old_status") == "ok"
        skipped += joined.filter(keep_old).height
        accepted = (
            joined.filter(~keep_old.fill_null(False))
            # Replacing an error row: attempts count every call ever made for the key.
            .with_columns(pl.col("attempts") + pl.col("__old_att").fill_null(0))
            .drop("__old_status", "__old_att")
        )
        merged = pl.concat([existing.join(accepted.select(key), on=key, how="anti"), accepted])
    n_ok = accepted.filter(pl.col("status") == "ok").height
    counts = WriteCounts(n_ok, accepted.height - n_ok, skipped)
    if accepted.height:
        merged = merged.sort(key)
        atomic_write_table(_to_arrow(merged, OBSERVATION_FILE_SCHEMA), path, metadata=_OBS_META)
    return counts


def write_observations(
    root: str | Path, rows: pl.DataFrame | Sequence[Mapping[str, Any]], *, shard: int
) -> WriteCounts:
    """Merge observation rows into shard ``shard`` of their (dataset, split, model) partitions.

    ``rows``: one row per generation with every column of ``OBSERVATION_COLUMNS`` (validated
    first; nothing is written if any row is invalid). For each key:

    * stored with status ok (in this shard or another shard of the partition): the new row is
      skipped, so an ok key is never written twice;
    * stored with status error in this shard: the new row (ok or error) replaces it and its
      ``attempts`` becomes old + new;
    * not stored: the new row is added.

    Cost: one read and one rewrite of the shard file, plus reading the key columns of the
    partition's other shards; a shard with nothing to write is left untouched.
    """
    shard = check_shard(shard)
    df = validate_observations(rows)
    layout = RunLayout(root)
    total = WriteCounts()
    for part, sub in _partitions(df, OBSERVATION_PARTITION):
        path = layout.observation_file(part["dataset"], part["split"], part["model"], shard)
        with _shard_lock(path):
            total += _merge_observations(path, sub, shard)
    return total


def _filter(lf: pl.LazyFrame, columns: Sequence[str], filters: Mapping[str, Any]) -> pl.LazyFrame:
    for name, value in filters.items():
        if name not in columns:
            raise StorageError(f"unknown filter column {name!r}; columns: {', '.join(columns)}")
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            lf = lf.filter(pl.col(name).is_in(list(value)))
        else:
            lf = lf.filter(pl.col(name) == value)
    return lf


def _scan(root: str | Path, kind: StoreKind, filters: Mapping[str, Any]) -> pl.LazyFrame:
    """Lazy scan of store ``kind``: the store's file set (:func:`list_files`, listed when the
    frame is collected), each file read through one handle with its checksums verified
    (:func:`read_shard_file`), so a scan is safe while a collection replaces shards and a
    damaged file raises DamagedFileError naming it. Projections and predicates reach the reader:
    only the needed columns are read, and partition filters prune directories."""
    schema = dict(kind.polars_schema)
    columns = list(schema)
    _filter(pl.LazyFrame(schema=schema), columns, filters)  # unknown filter columns fail now
    pruning = {k: v for k, v in filters.items() if k in kind.partition}

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, _: Any
    ) -> Iterator[pl.DataFrame]:
        out = columns if with_columns is None else with_columns
        needed = set(out) | (set(predicate.meta.root_names()) if predicate is not None else set())
        in_file = [c for c in kind.file_schema.names if c in needed]
        files = list_files(root, kind, **pruning)
        files.raise_damaged()
        left = n_rows
        for f in files.parts:
            df = read_shard_file(f.path, kind.file_schema, in_file)
            if df is None:  # replaced by a quarantine move since the listing
                continue
            df = df.with_columns(pl.lit(v, schema[k]).alias(k) for k, v in f.partition)
            if predicate is not None:
                df = df.filter(predicate)
            df = df.select(out).cast({c: schema[c] for c in out})
            if left is not None:
                df = df.head(left)
                left -= df.height
            yield df
            if left is not None and left <= 0:
                return

    return _filter(register_io_source(source, schema=schema), columns, filters)


def scan_observations(root: str | Path, **filters: Any) -> pl.LazyFrame:
    """Lazy scan of every stored observation, columns in ``OBSERVATION_COLUMNS`` order.

    ``filters`` are column=value (or column=[values]) equality filters on any column; None means
    no filter. Filters on dataset/split/model prune whole directories. An empty store gives an
    empty frame with the full schema.
    """
    return _scan(root, OBSERVATIONS, filters)


def read_observations(
    root: str | Path, columns: Sequence[str] | None = None, **filters: Any
) -> pl.DataFrame:
    """Eager read of the stored observations that is safe while a collection writes the store.

    Same rows as ``scan_observations(root, **filters).select(columns).collect()`` (default: every
    column, in ``OBSERVATION_COLUMNS`` order), but each shard file is read through one open
    handle (see :func:`_read_file`), so a shard replaced mid-read by a running decode task gives
    its old or its new rows. Use it for status and progress during a collection; use
    :func:`scan_observations` (lazy, faster) on a store nobody is writing.
    """
    columns = list(OBSERVATION_POLARS_SCHEMA if columns is None else columns)
    valid = list(OBSERVATION_POLARS_SCHEMA)
    bad = [c for c in [*columns, *filters] if c not in valid]
    if bad:
        raise StorageError(f"unknown column(s) {bad}; columns: {', '.join(valid)}")
    return _scan(root, OBSERVATIONS, filters).select(columns).collect()


def done_keys(
    root: str | Path, dataset: str, split: str, model: str, *, shard: int | None = None
) -> pl.DataFrame:
    """Keys of one (dataset, split, model) partition stored with status ok.

    One row per key, columns ``OBSERVATION_KEY``. With ``shard`` only that shard file is read;
    without it every shard of the partition (what a decode task should use to decide what is left
    to do, since imported rows may sit in a different shard).
    """
    layout = RunLayout(root)
    part_dir = layout.observation_partition(dataset, split, model)
    if shard is None:
        files = [p for _, p in _shard_files(part_dir)]
    else:
        files = [layout.observation_file(dataset, split, model, shard)]
    cols = [*_OBS_FILE_KEY, "status"]
    frames = [
        f for f in (_read_file(p, OBSERVATION_FILE_SCHEMA, cols) for p in files) if f is not None
    ]
    schema = {k: OBSERVATION_POLARS_SCHEMA[k] for k in OBSERVATION_KEY}
    if not frames:
        return pl.DataFrame(schema=schema)
    return (
        pl.concat(frames)
        .filter(pl.col("status") == "ok")
        .with_columns(
            pl.lit(dataset).alias("dataset"),
            pl.lit(split).alias("split"),
            pl.lit(model).alias("model"),
        )
        .select(OBSERVATION_KEY)
        .unique(maintain_order=True)
        .cast(schema)  # type: ignore[arg-type]
    )


def key_shards(root: str | Path, dataset: str, split: str, model: str) -> pl.DataFrame:
    """Which shard file of a partition holds each stored key (any status).

    One row per stored (query_id, rewrite_id, decode_id) with its ``shard``; used to send a
    rewritten key back to the file it already lives in, so it never exists in two shards.
    """
    layout = RunLayout(root)
    frames = []
    for s, p in _shard_files(layout.observation_partition(dataset, split, model)):
        f = _read_file(p, OBSERVATION_FILE_SCHEMA, _OBS_FILE_KEY)
        if f is not None:
            frames.append(f.with_columns(pl.lit(s, pl.Int32).alias("shard")))
    if not frames:
        schema = {k: OBSERVATION_POLARS_SCHEMA[k] for k in _OBS_FILE_KEY}
        return pl.DataFrame(schema={**schema, "shard": pl.Int32})
    return pl.concat(frames)


# ------------------------------------------------------------------------------------------------
# rewrites
# ------------------------------------------------------------------------------------------------
def write_rewrites(
    root: str | Path,
    rows: pl.DataFrame | Sequence[Mapping[str, Any]],
    *,
    shard: int,
    replace: bool = False,
) -> RewriteCounts:
    """Merge rewrite rows into shard ``shard`` of their (dataset, split) partitions.

    ``rows``: one row per (dataset, split, query_id, rewrite_id) with every column of
    ``REWRITE_COLUMNS`` (validated first). A key already stored keeps its row (counted as
    skipped) unless ``replace=True``, in which case the new row overwrites it (e.g. after review).
    """
    shard = check_shard(shard)
    df = validate_rewrites(rows)
    layout = RunLayout(root)
    total = RewriteCounts()
    key = _REW_FILE_KEY
    for part, new in _partitions(df, REWRITE_PARTITION):
        path = layout.rewrite_file(part["dataset"], part["split"], shard)
        with _shard_lock(path):
            existing = _read_file(path, REWRITE_FILE_SCHEMA)
            if existing is None:
                accepted, merged = new, new
            elif replace:
                accepted = new
                merged = pl.concat([existing.join(new.select(key), on=key, how="anti"), new])
            else:
                accepted = new.join(existing.select(key), on=key, how="anti")
                merged = pl.concat([existing, accepted])
            total += RewriteCounts(accepted.height, new.height - accepted.height)
            if accepted.height:
                atomic_write_table(
                    _to_arrow(merged.sort(key), REWRITE_FILE_SCHEMA), path, metadata=_REW_META
                )
    return total


def scan_rewrites(root: str | Path, **filters: Any) -> pl.LazyFrame:
    """Lazy scan of every stored rewrite, columns in ``REWRITE_COLUMNS`` order (filters as in
    :func:`scan_observations`)."""
    return _scan(root, REWRITES, filters)


def rewrite_keys(
    root: str | Path, dataset: str, split: str, *, shard: int | None = None
) -> pl.DataFrame:
    """Keys of one (dataset, split) rewrite partition that are stored; columns ``REWRITE_KEY``."""
    layout = RunLayout(root)
    if shard is None:
        files = [p for _, p in _shard_files(layout.rewrite_partition(dataset, split))]
    else:
        files = [layout.rewrite_file(dataset, split, shard)]
    frames = [
        f
        for f in (_read_file(p, REWRITE_FILE_SCHEMA, _REW_FILE_KEY) for p in files)
        if f is not None
    ]
    schema = {k: REWRITE_POLARS_SCHEMA[k] for k in REWRITE_KEY}
    if not frames:
        return pl.DataFrame(schema=schema)
    return (
        pl.concat(frames)
        .with_columns(pl.lit(dataset).alias("dataset"), pl.lit(split).alias("split"))
        .select(REWRITE_KEY)
        .unique(maintain_order=True)
        .cast(schema)  # type: ignore[arg-type]
    )


__all__ = [
    "OBSERVATION_COLUMNS",
    "REWRITE_COLUMNS",
    "RewriteCounts",
    "WriteCounts",
    "atomic_write_table",
    "atomic_write_text",
    "done_keys",
    "key_shards",
    "rewrite_keys",
    "read_observations",
    "scan_observations",
    "scan_rewrites",
    "write_observations",
    "write_rewrites",
]
