"""Checking the observation and rewrite stores file by file, and moving damaged files aside.

Public API::

    check_store(root) -> StoreCheck            every file of both stores read, checksums verified
    quarantine(root, damaged) -> list[Moved]   damaged files renamed into <root>/quarantine/

``check_store`` reads every byte of every shard file (all columns, page checksums verified), so
it finds what a reader of a few columns would miss (e.g. flipped bytes in ``cost_usd`` while
``dars status`` reads only keys). ``quarantine`` renames, never deletes: a damaged file moves to
``RunLayout.quarantine_path`` (same relative path under ``quarantine/``), where no reader looks,
so the keys it held become *missing* and the next ``dars collect`` / ``dars rerun --failed``
makes them again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dars.storage.files import (
    STORES,
    DamagedFileError,
    StoreKind,
    list_files,
    read_shard_file,
)
from dars.storage.layout import RunLayout, StorageError, shard_from_file_name
from dars.storage.store import _fsync_dir, _shard_lock


@dataclass(frozen=True)
class DamagedFile:
    """One file of a store that cannot be read: ``store`` (observations | rewrites), the
    ``partition`` (column -> value) and ``shard`` its path names (None when the path names no
    shard), ``reason`` in one line and ``message`` (path, reason, what to do) in one line."""

    path: Path
    store: str
    partition: dict[str, str]
    shard: int | None
    reason: str
    message: str


@dataclass
class StoreCheck:
    """What :func:`check_store` found: ``files`` / ``rows`` read without error, ``strays``
    (paths under a store that are not part of it, never read) and ``damaged`` files."""

    files: int = 0
    rows: int = 0
    strays: list[Path] = field(default_factory=list)
    damaged: list[DamagedFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No damaged file (strays do not make a store damaged: no reader reads them)."""
        return not self.damaged


@dataclass(frozen=True)
class Moved:
    """One damaged file renamed into quarantine (``source`` -> ``target``)."""

    source: Path
    target: Path
    damaged: DamagedFile


def _describe(root: Path, kind: StoreKind, err: DamagedFileError) -> DamagedFile:
    base = kind.base(RunLayout(root))
    partition: dict[str, str] = {}
    shard = None
    try:
        parts = err.path.relative_to(base).parts
    except ValueError:
        parts = ()
    for seg in parts[:-1]:
        k, _, v = seg.partition("=")
        partition[k] = v
    if parts and len(parts) == len(kind.partition) + 1:
        try:
            shard = shard_from_file_name(parts[-1])
        except StorageError:
            shard = None
    return DamagedFile(err.path, kind.name, partition, shard, err.reason, str(err))


def _check_one(path: Path, kind: StoreKind) -> int:
    """Rows of the file, read in full with checksums verified; raises DamagedFileError."""
    df = read_shard_file(path, kind.file_schema)
    return 0 if df is None else df.height


def check_store(root: str | Path) -> StoreCheck:
    """Read every file of the observation and rewrite stores under ``root`` in full.

    Cost: one read of the whole store (every column of every shard). Safe while a collection
    writes (each file through one handle). Finds strays and structurally damaged entries from
    the listing, and every file that does not read (zero bytes, truncated, unreadable footer,
    wrong schema, a page whose checksum fails).
    """
    root = RunLayout(root).root
    out = StoreCheck()
    for kind in STORES:
        files = list_files(root, kind)
        out.strays += files.strays
        out.damaged += [_describe(root, kind, e) for e in files.damaged]
        for f in files.parts:
            try:
                out.rows += _check_one(f.path, kind)
                out.files += 1
            except DamagedFileError as exc:
                out.damaged.append(_describe(root, kind, exc))
    return out


def _still_damaged(d: DamagedFile) -> bool:
    kind = next(k for k in STORES if k.name == d.store)
    if not os.path.lexists(d.path):
        return False
    if d.path.is_dir() or d.shard is None:
        return True
    try:
        _check_one(d.path, kind)
    except DamagedFileError:
        return True
    return False  # a writer replaced it with a good file since the check


def quarantine(root: str | Path, damaged: Sequence[DamagedFile]) -> list[Moved]:
    """Rename each damaged file to ``RunLayout(root).quarantine_path(path)`` and return what
    moved. Nothing is deleted; a target that exists already gets a ``.1``, ``.2``… suffix.

    Each move holds the shard's writer lock and checks the file again under it, so a file a
    running collection has just replaced with a good version stays where it is."""
    layout = RunLayout(root)
    moved = []
    for d in damaged:
        with _shard_lock(d.path):
            if not _still_damaged(d):
                continue
            attempt = 0
            target = layout.quarantine_path(d.path)
            while os.path.lexists(target):
                attempt += 1
                target = layout.quarantine_path(d.path, attempt)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(d.path, target)  # same file system (both under the root): atomic
            _fsync_dir(d.path.parent)
            _fsync_dir(target.parent)
        moved.append(Moved(d.path, target, d))
    return moved


__all__ = ["DamagedFile", "Moved", "StoreCheck", "check_store", "quarantine"]
