"""The query store: the queries of datasets imported with ``dars import``.

An imported dataset has no benchmark loader: its queries live in the run's store, one Parquet file
per dataset at ``RunLayout(root).queries_file(dataset)``, one row per query
(:data:`QUERY_SCHEMA`): ``dataset``, ``query_id``, ``split`` (train | test), ``question`` (the
text routers embed), ``context`` (a passage shown with the question, or null), ``gold`` (the
reference answer as text, or null) and ``task_type`` (a registered task type, or null when the
import did not say; scores were given, so none is needed to supervise, train or evaluate).

:func:`merge_queries` adds queries to a dataset's file: a query already stored must come back
identical (same split and texts), so a second import of other models' generations for the same
questions is fine, and a conflicting one fails naming the query and the column.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dars.storage.layout import RunLayout, StorageError
from dars.storage.store import atomic_write_table

__all__ = [
    "QUERY_COLUMNS",
    "QUERY_SCHEMA",
    "merge_queries",
    "queries_exist",
    "query_conflicts",
    "read_queries",
]

QUERY_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("context", pa.string()),
        pa.field("gold", pa.string()),
        pa.field("task_type", pa.string()),
    ]
)
QUERY_COLUMNS: tuple[str, ...] = tuple(QUERY_SCHEMA.names)


def queries_exist(root: str | Path, dataset: str) -> bool:
    return RunLayout(root).queries_file(dataset).is_file()


def read_queries(root: str | Path, dataset: str) -> pl.DataFrame:
    """The stored queries of ``dataset`` (sorted by split, then query_id); FileNotFoundError
    naming the file and the command that writes it when absent."""
    path = RunLayout(root).queries_file(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"no imported queries for dataset {dataset!r} at {path}: import them with "
            "`dars import FILE --root <root>` and a `question` column (the text routers embed)"
        )
    return pl.from_arrow(pq.read_table(path, page_checksum_verification=True))  # type: ignore[return-value]


def query_conflicts(root: str | Path, dataset: str, frame: pl.DataFrame) -> list[str]:
    """Problems merging ``frame``'s queries into the stored ones of ``dataset`` (a query whose
    split or texts differ from its stored row), one line each; empty when they merge."""
    path = RunLayout(root).queries_file(dataset)
    if not path.is_file():
        return []
    new = frame.select(QUERY_COLUMNS).cast({c: pl.String for c in QUERY_COLUMNS})
    return [f"{path}: {p}" for p in _conflicts(read_queries(root, dataset), new)]


def _conflicts(old: pl.DataFrame, new: pl.DataFrame) -> list[str]:
    both = old.join(new, on=["dataset", "query_id"], how="inner", suffix="_new")
    out = []
    for col in ("split", "question", "context", "gold", "task_type"):
        differ = both.filter(pl.col(col).ne_missing(pl.col(f"{col}_new")))
        for r in differ.head(3).iter_rows(named=True):
            out.append(
                f"query {r['query_id']!r}: column '{col}' is {r[col]!r} in the store and "
                f"{r[col + '_new']!r} in the new rows"
            )
    return out


def merge_queries(root: str | Path, dataset: str, frame: pl.DataFrame) -> tuple[Path, int]:
    """Add ``frame``'s queries (columns :data:`QUERY_COLUMNS`, one row per query) to the stored
    queries of ``dataset``; returns (path, number of new queries). Raises StorageError, writing
    nothing, when a query differs from its stored row or sits in both splits."""
    path = RunLayout(root).queries_file(dataset)
    missing = [c for c in QUERY_COLUMNS if c not in frame.columns]
    if missing:
        raise StorageError(f"queries of dataset {dataset!r} lack column(s) {missing} ({path})")
    new = frame.select(QUERY_COLUMNS).cast({c: pl.String for c in QUERY_COLUMNS})
    if new.filter(pl.col("dataset") != dataset).height:
        raise StorageError(f"queries for dataset {dataset!r} hold rows of another dataset ({path})")
    old = read_queries(root, dataset) if path.is_file() else new.clear()
    problems = _conflicts(old, new)
    if problems:
        raise StorageError(
            f"{path}: the imported queries differ from the stored ones:\n  " + "\n  ".join(problems)
        )
    merged = (
        pl.concat([old, new.join(old, on=["dataset", "query_id"], how="anti")])
        .unique(["dataset", "query_id"], keep="first", maintain_order=True)
        .sort("split", "query_id", descending=[True, False])
    )
    table = merged.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(QUERY_SCHEMA)
    atomic_write_table(table, path)
    return path, merged.height - old.height
