"""The truth store: path, schema, one dataset per file, clear errors."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dars.storage import StorageError
from dars.storage.truth import read_truth, remove_truth, write_truth

TRUTH = pl.DataFrame(
    {
        "dataset": ["ds", "ds"],
        "query_id": ["q1", "q1"],
        "model": ["a", "b"],
        "p_true": [0.25, 0.75],
        "expected_cost_usd": [1e-4, 3e-4],
    }
)


def test_round_trip_at_the_layout_path(tmp_path):
    path = write_truth(tmp_path, "ds", TRUTH.with_columns(extra=pl.lit(1)))
    assert path == tmp_path / "truth" / "dataset=ds" / "truth.parquet"
    assert_frame_equal(read_truth(tmp_path, "ds"), TRUTH)
    remove_truth(tmp_path, "ds")
    assert not path.exists()
    remove_truth(tmp_path, "ds")  # absent: nothing to do


def test_errors_name_the_file_and_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no simulator truth .*dars collect"):
        read_truth(tmp_path, "ds")
    with pytest.raises(StorageError, match=r"lacks column\(s\) \['p_true'\]"):
        write_truth(tmp_path, "ds", TRUTH.drop("p_true"))
    with pytest.raises(StorageError, match="rows of dataset 'other'"):
        write_truth(tmp_path, "ds", TRUTH.with_columns(dataset=pl.lit("other")))
    assert not (tmp_path / "truth").exists()
