"""Named supervision tables, one Parquet file per (dataset, name).

Public API::

    write_supervision(root, dataset, name, frame) -> Path
    write_supervision_chunks(root, dataset, names, chunks) -> list[Path]
    read_supervision(root, dataset, name) -> pl.DataFrame
    supervision_exists(root, dataset, name) -> bool
    remove_supervision(root, dataset, name) -> bool
    list_supervision(root, dataset) -> list[str]

Files live at ``RunLayout(root).supervision_file(dataset, name)``, i.e.
``<root>/supervision/dataset=<dataset>/<name>.parquet``. What each table means is documented by
the stage that writes it (:mod:`dars.supervision.stage`); this module only stores frames. Writes
are atomic (:func:`dars.storage.store.atomic_write_table`): a reader sees the previous file or
the new one, never a partial one. Strings are stored as plain Arrow ``string`` (not polars'
string views) so every Parquet reader, whatever its version, reads the files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dars.storage.layout import RunLayout, StorageError
from dars.storage.store import atomic_table_writer, atomic_write_table

_SCHEMA_META_KEY = b"dars.schema"
# Shown in "not found" errors so the user knows which command produces the table.
PRODUCER_COMMAND = "dars supervise --config <config.yaml> --root {root}"


def _arrow(frame: pl.DataFrame) -> pa.Table:
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    # polars exports large_string; plain string keeps the files identical across polars versions.
    fields = [
        pa.field(f.name, pa.string(), f.nullable) if pa.types.is_large_string(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _check_frame(path: Path, dataset: str, name: str, frame: pl.DataFrame) -> None:
    if not isinstance(frame, pl.DataFrame):
        raise StorageError(
            f"supervision table {name!r} of dataset {dataset!r}: expected a polars DataFrame, "
            f"got {type(frame).__name__}"
        )
    if "dataset" in frame.columns:
        other = frame.filter(pl.col("dataset").ne_missing(dataset))["dataset"].unique()
        if other.len():
            raise StorageError(
                f"supervision table {name!r} for dataset {dataset!r} has rows with dataset "
                f"{sorted(map(repr, other.to_list()))}; write one dataset per file ({path})"
            )


def _meta(name: str) -> dict[bytes, bytes]:
    return {_SCHEMA_META_KEY: f"supervision/{name}/1".encode()}


def write_supervision(root: str | Path, dataset: str, name: str, frame: pl.DataFrame) -> Path:
    """Atomically (over)write table ``name`` of ``dataset``; returns the file path.

    ``frame`` is stored as given (column order and dtypes kept). If it has a ``dataset`` column,
    every value must equal ``dataset``, so a table can never be filed under the wrong dataset.
    """
    path = RunLayout(root).supervision_file(dataset, name)
    _check_frame(path, dataset, name, frame)
    atomic_write_table(_arrow(frame), path, metadata=_meta(name))
    return path


def write_supervision_chunks(
    root: str | Path,
    dataset: str,
    names: Sequence[str],
    chunks: Iterable[Sequence[pl.DataFrame]],
) -> list[Path]:
    """Atomically (over)write several tables of ``dataset`` given in row chunks.

    Each item of ``chunks`` holds one frame per name of ``names`` (the next rows of each table,
    same columns in every chunk); the tables are read back as if written whole by
    :func:`write_supervision` with the chunks concatenated, but only one chunk is held at a time.
    Every file appears only once all chunks are written. Returns the paths, in ``names`` order.
    """
    layout = RunLayout(root)
    paths = [layout.supervision_file(dataset, name) for name in names]
    with contextlib.ExitStack() as stack:
        writers = None
        for frames in chunks:
            if len(frames) != len(names):
                raise StorageError(f"a chunk has {len(frames)} frames for tables {list(names)}")
            tables = []
            for path, name, frame in zip(paths, names, frames, strict=True):
                _check_frame(path, dataset, name, frame)
                tables.append(_arrow(frame))
            if writers is None:
                # Long tables of distinct floats: dictionary-encode only the key columns
                # (strings and integers), which halves the write time of the float columns.
                writers = [
                    stack.enter_context(
                        atomic_table_writer(
                            p,
                            t.schema,
                            metadata=_meta(n),
                            use_dictionary=[
                                f.name for f in t.schema if not pa.types.is_floating(f.type)
                            ],
                        )
                    )
                    for p, n, t in zip(paths, names, tables, strict=True)
                ]
            for writer, table in zip(writers, tables, strict=True):
                writer.write_table(table)
        if writers is None:
            raise StorageError(f"no rows given for tables {list(names)} of dataset {dataset!r}")
    return paths


def supervision_exists(root: str | Path, dataset: str, name: str) -> bool:
    return RunLayout(root).supervision_file(dataset, name).is_file()


def read_supervision(root: str | Path, dataset: str, name: str) -> pl.DataFrame:
    """Table ``name`` of ``dataset`` as written by :func:`write_supervision`.

    A missing file raises ``FileNotFoundError`` naming the path, the tables that do exist for
    the dataset and the command that produces them.
    """
    path = RunLayout(root).supervision_file(dataset, name)
    if not path.is_file():
        have = list_supervision(root, dataset)
        found = f"tables present for this dataset: {', '.join(have)}" if have else "none present"
        raise FileNotFoundError(
            f"supervision table {name!r} for dataset {dataset!r} not found at {path} "
            f"({found}); produce it with `{PRODUCER_COMMAND.format(root=RunLayout(root).root)}`"
        )
    return pl.from_arrow(pq.read_table(path, page_checksum_verification=True))  # type: ignore[return-value]


def remove_supervision(root: str | Path, dataset: str, name: str) -> bool:
    """Delete table ``name`` of ``dataset`` if present (e.g. a table that no longer applies);
    returns whether a file was removed."""
    path = RunLayout(root).supervision_file(dataset, name)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def list_supervision(root: str | Path, dataset: str) -> list[str]:
    """Names of the tables stored for ``dataset`` (sorted; empty when there are none)."""
    directory = RunLayout(root).supervision_dir(dataset)
    if not directory.is_dir():
        return []
    # Temporary files start with "." and end in ".tmp", so this glob never lists them.
    return sorted(p.stem for p in directory.glob("[!.]*.parquet"))
