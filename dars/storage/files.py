"""The file set of the observation and rewrite stores, and the one verified way to read a file.

Every reader of the stores (the lazy scans, ``read_observations``, ``done_keys``, the writers'
merge, ``dars status``) takes its files from :func:`list_files` / :func:`list_partition`, so they
all agree on what the store holds. A store's file set is::

    <root>/<store>/<col1>=<v1>/…/<colN>=<vN>/part-NNNNN.parquet

with the store's partition columns in order (observations: dataset, split, model; rewrites:
dataset, split), each value a valid partition value (``layout.check_name``; ``split`` one of
train/test) and the file a regular file. Everything else under the store is classified, never
read:

* *hidden* (leading ``.``): the writers' temporary and lock files; skipped silently;
* *stray*: any other name (``backup.parquet``, ``junk.parquet``, ``part-1.parquet``, a
  ``dataset=x`` file, an unexpected directory): not part of the store; ``dars status`` lists it;
* *damaged*: a ``part-NNNNN.parquet`` that is not a regular file (a directory in its place):
  its data is missing, so every reader that would read it raises :class:`DamagedFileError`.

:func:`read_shard_file` opens a file once (a writer's atomic replace leaves the reader on the old
inode), verifies the Parquet page checksums the writers store (``write_page_checksum``; files
written before checksums existed have none and read as before), checks the schema, and turns
every failure (zero bytes, truncated, unreadable footer, flipped bytes, wrong schema) into a
:class:`DamagedFileError` naming the file and the command that repairs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dars.storage.layout import (
    SHARD_WIDTH,
    RunLayout,
    StorageError,
    check_name,
    check_split,
)
from dars.storage.schemas import (
    OBSERVATION_FILE_SCHEMA,
    OBSERVATION_PARTITION,
    OBSERVATION_POLARS_SCHEMA,
    REWRITE_FILE_SCHEMA,
    REWRITE_PARTITION,
    REWRITE_POLARS_SCHEMA,
)

_SHARD_RE = re.compile(rf"part-(\d{{{SHARD_WIDTH}}})\.parquet")
#: What to do about a damaged file; the CLI prints it after the file's path.
REPAIR_HINT = (
    "run `dars status --repair` to move it into quarantine/ and list the keys to collect again"
)


class DamagedFileError(StorageError):
    """A file of the store cannot be read as a shard file; ``path`` is the file, ``reason`` says
    why in one line. The message is one line: path, reason and what to do."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}; {REPAIR_HINT}")


@dataclass(frozen=True)
class StoreKind:
    """One hive-partitioned store: its directory name under the root, its partition columns (in
    path order), the schema of its files (without partition columns) and its polars schema."""

    name: str
    partition: tuple[str, ...]
    file_schema: pa.Schema
    polars_schema: Mapping[str, Any]
    base: Callable[[RunLayout], Path]


OBSERVATIONS = StoreKind(
    "observations",
    OBSERVATION_PARTITION,
    OBSERVATION_FILE_SCHEMA,
    OBSERVATION_POLARS_SCHEMA,
    RunLayout.observations_dir,
)
REWRITES = StoreKind(
    "rewrites",
    REWRITE_PARTITION,
    REWRITE_FILE_SCHEMA,
    REWRITE_POLARS_SCHEMA,
    RunLayout.rewrites_dir,
)
STORES: tuple[StoreKind, ...] = (OBSERVATIONS, REWRITES)


@dataclass(frozen=True)
class ShardFile:
    """One file of the store: ``partition`` holds the (column, value) pairs of its directory."""

    path: Path
    partition: tuple[tuple[str, str], ...]
    shard: int


@dataclass
class FileSet:
    """What :func:`list_files` found: the shard files (sorted by path), the strays (never read)
    and the damaged entries (a directory or other non-file where a shard file should be)."""

    parts: list[ShardFile] = field(default_factory=list)
    strays: list[Path] = field(default_factory=list)
    damaged: list[DamagedFileError] = field(default_factory=list)

    def raise_damaged(self) -> None:
        """Raise the first damaged entry, if any (readers must not silently drop its data)."""
        if self.damaged:
            raise self.damaged[0]


def _valid_value(column: str, value: str) -> bool:
    try:
        check_split(value) if column == "split" else check_name(column, value)
    except StorageError:
        return False
    return True


def _wanted(value: str, wanted: Any) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, list | tuple | set | frozenset):
        return value in {str(w) for w in wanted}
    return value == str(wanted)


def _walk(
    directory: Path,
    partition: Sequence[str],
    depth: int,
    values: tuple[tuple[str, str], ...],
    filters: Mapping[str, Any],
    out: FileSet,
) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        out.damaged.append(DamagedFileError(directory, "a file where a directory should be"))
        return
    for entry in entries:
        name, path = entry.name, Path(entry.path)
        if name.startswith("."):  # the writers' temporary and lock files
            continue
        if depth < len(partition):
            col = partition[depth]
            key, sep, value = name.partition("=")
            if entry.is_dir() and sep and key == col and _valid_value(col, value):
                if _wanted(value, filters.get(col)):
                    _walk(path, partition, depth + 1, (*values, (col, value)), filters, out)
            else:
                out.strays.append(path)
            continue
        m = _SHARD_RE.fullmatch(name)
        if m is None:
            out.strays.append(path)
        elif entry.is_file():
            out.parts.append(ShardFile(path, values, int(m.group(1))))
        else:
            kind = "a directory" if entry.is_dir() else "not a regular file"
            out.damaged.append(DamagedFileError(path, f"{kind} where a shard file should be"))


def list_files(root: str | Path, kind: StoreKind, **filters: Any) -> FileSet:
    """Classify every entry of store ``kind`` under ``root`` (see the module docstring).

    ``filters``: partition column = value (or list of values; None = all) prunes directories
    before they are listed; a filter on any other column is ignored here.
    """
    base = kind.base(RunLayout(root))
    out = FileSet()
    _walk(base, kind.partition, 0, (), filters, out)
    # Whole-path order, as a glob over the store lists them (``model=a-b/…`` before
    # ``model=a/…``), so scans return rows in the order they always did.
    out.parts.sort(key=lambda f: str(f.path))
    return out


def list_partition(partition_dir: Path) -> FileSet:
    """Classify the entries of one partition directory (its shard files, strays, damaged)."""
    out = FileSet()
    _walk(partition_dir, (), 0, (), {}, out)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(".")


def _schema_difference(found: pa.Schema, expected: pa.Schema) -> str:
    missing = [n for n in expected.names if n not in found.names]
    extra = [n for n in found.names if n not in expected.names]
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected column(s) {', '.join(extra)}")
    for f in expected:
        if f.name in found.names and not found.field(f.name).type.equals(f.type):
            parts.append(f"{f.name} is {found.field(f.name).type}, expected {f.type}")
    if not parts:  # same columns and types: order or nullability differ
        parts.append(f"columns {', '.join(found.names)}; expected {', '.join(expected.names)}")
    return "schema differs from the store's: " + "; ".join(parts)


def read_shard_file(
    path: Path, file_schema: pa.Schema, columns: Sequence[str] | None = None
) -> pl.DataFrame | None:
    """Read one shard file (without partition columns), or None if it does not exist.

    The file is opened once and its schema and rows come from that one handle: a writer that
    atomically replaces the file meanwhile leaves this reader on the old inode, so it sees the
    old version or the new one, never a mix (a polars multi-file scan, which reads a footer and
    later the data by path, can fail or even panic in that case). Page checksums are verified
    where the file has them. Raises :class:`DamagedFileError` (one line: path, reason, what to
    do) for anything that is not a readable file of ``file_schema``.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the one read
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DamagedFileError(path, "a directory where a shard file should be") from None
    except OSError as exc:
        raise DamagedFileError(path, f"cannot be opened ({exc.strerror})") from None
    with fh:
        try:
            pf = pq.ParquetFile(fh, page_checksum_verification=True)
            found = pf.schema_arrow.remove_metadata()
        except (pa.ArrowException, OSError) as exc:
            size = os.fstat(fh.fileno()).st_size
            why = "empty (0 bytes)" if size == 0 else f"not a readable Parquet file ({size} bytes)"
            raise DamagedFileError(path, f"{why}: {_first_line(exc)}") from None
        if not found.equals(file_schema):
            raise DamagedFileError(path, _schema_difference(found, file_schema))
        try:
            table = pf.read(columns=list(columns) if columns is not None else None)
        except (pa.ArrowException, OSError) as exc:
            raise DamagedFileError(path, f"data pages do not read: {_first_line(exc)}") from None
    return pl.from_arrow(table)  # type: ignore[return-value]


__all__ = [
    "OBSERVATIONS",
    "REPAIR_HINT",
    "REWRITES",
    "STORES",
    "DamagedFileError",
    "FileSet",
    "ShardFile",
    "StoreKind",
    "list_files",
    "list_partition",
    "read_shard_file",
]
