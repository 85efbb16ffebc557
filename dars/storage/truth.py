"""The truth store: a simulated pool's ground truth per (dataset, query, model).

Written by the collect stage when every pool model is simulated, so that label recovery (the
supervise stage) can compare labels with the truth without calling, or importing, the
simulator: aggregation never calls a model. One file per dataset at
``RunLayout(root).truth_file(dataset)``; one row per (dataset, query_id, model) of the
experiment's train queries × the pool (:data:`TRUTH_SCHEMA`):

``p_true``
    the expected score of one decode of a fresh meaning-preserving formulation (the simulator's
    expectation averaged over many paraphrase ids), the quantity DARS and single-shot estimate;
``expected_cost_usd``
    the expected cost of one decode at the pool's prices.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dars.storage.layout import RunLayout, StorageError
from dars.storage.store import atomic_write_table

__all__ = ["TRUTH_SCHEMA", "read_truth", "remove_truth", "write_truth"]

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("p_true", pa.float64(), nullable=False),
        pa.field("expected_cost_usd", pa.float64(), nullable=False),
    ]
)


def write_truth(root: str | Path, dataset: str, frame: pl.DataFrame) -> Path:
    """Atomically (over)write the truth of ``dataset``; returns the path."""
    path = RunLayout(root).truth_file(dataset)
    missing = [n for n in TRUTH_SCHEMA.names if n not in frame.columns]
    if missing:
        raise StorageError(f"truth of dataset {dataset!r} lacks column(s) {missing} ({path})")
    other = frame.filter(pl.col("dataset") != dataset)
    if other.height:
        raise StorageError(
            f"truth for dataset {dataset!r} has rows of dataset {other['dataset'][0]!r} ({path})"
        )
    table = frame.select(TRUTH_SCHEMA.names).to_arrow(compat_level=pl.CompatLevel.oldest())
    atomic_write_table(table.cast(TRUTH_SCHEMA), path)
    return path


def read_truth(root: str | Path, dataset: str) -> pl.DataFrame:
    """The stored truth of ``dataset``; FileNotFoundError naming the file and the command that
    writes it when absent."""
    path = RunLayout(root).truth_file(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"no simulator truth for dataset {dataset!r} at {path}: the collect stage writes it "
            "for simulated pools; run `dars collect` (it makes no new calls when the store is "
            "complete)"
        )
    return pl.from_arrow(pq.read_table(path, page_checksum_verification=True))  # type: ignore[return-value]


def remove_truth(root: str | Path, dataset: str) -> None:
    """Delete the truth of ``dataset`` if present (the pool is no longer simulated)."""
    RunLayout(root).truth_file(dataset).unlink(missing_ok=True)
