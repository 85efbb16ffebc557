"""The supervision store: exact paths, round trip, listing, errors."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dars.storage import StorageError
from dars.storage.supervision_store import list_supervision, read_supervision, write_supervision

DS = "demo_mc"


# ------------------------------------------------------------------------------------------------
def test_supervision_store_round_trip_and_errors(tmp_path):
    frame = pl.DataFrame(
        {
            "dataset": [DS, DS],
            "k": pl.Series([1, None], dtype=pl.Int32),
            "ok": [True, False],
            "name": ["a", None],
            "x": [0.5, float("nan")],
        }
    )
    path = write_supervision(tmp_path, DS, "things", frame)
    assert path == tmp_path / "supervision" / f"dataset={DS}" / "things.parquet"
    assert_frame_equal(read_supervision(tmp_path, DS, "things"), frame)
    (path.parent / ".things.parquet.123.tmp").write_bytes(b"partial")
    assert list_supervision(tmp_path, DS) == ["things"]

    with pytest.raises(FileNotFoundError, match=r"'labels'.*things.*dars supervise"):
        read_supervision(tmp_path, DS, "labels")
    with pytest.raises(StorageError, match="other"):
        write_supervision(tmp_path, DS, "mixed", frame.with_columns(dataset=pl.lit("other")))
    with pytest.raises(StorageError, match="cannot be used in a path"):
        write_supervision(tmp_path, DS, "../up", frame)
