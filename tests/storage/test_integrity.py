"""Checking a store file by file and moving damaged files into quarantine/."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from dars.storage import RunLayout, StorageError, read_observations, write_observations
from dars.storage.integrity import check_store, quarantine


def _store(root, make_obs):
    for shard in (0, 1):
        rows = [make_obs(f"q{shard}-{i}", "a", 0, 0) for i in range(5)]
        write_observations(root, pl.DataFrame(rows), shard=shard)
    return RunLayout(root).observation_file("demo", "train", "a", 0)


def test_check_store_reads_every_byte(tmp_path, make_obs, make_rewrite):
    from dars.storage import write_rewrites

    target = _store(tmp_path, make_obs)
    write_rewrites(tmp_path, [make_rewrite("q1", 0)], shard=0)
    check = check_store(tmp_path)
    assert check.ok and (check.files, check.rows, check.strays) == (3, 11, [])
    shutil.copy(target, target.parent / "backup.parquet")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) - 10])
    check = check_store(tmp_path)
    assert not check.ok and check.strays == [target.parent / "backup.parquet"]
    (d,) = check.damaged
    assert (d.path, d.store, d.shard) == (target, "observations", 0)
    assert d.partition == {"dataset": "demo", "split": "train", "model": "a"}
    assert "\n" not in d.message and str(target) in d.message and d.reason in d.message


def test_quarantine_moves_and_never_deletes(tmp_path, make_obs):
    target = _store(tmp_path, make_obs)
    target.unlink()
    target.mkdir()
    (target / "inside").write_text("kept")
    (d,) = check_store(tmp_path).damaged
    (moved,) = quarantine(tmp_path, [d])
    assert moved.target == tmp_path / "quarantine" / target.relative_to(tmp_path)
    assert (moved.target / "inside").read_text() == "kept" and not target.exists()
    assert read_observations(tmp_path, ["query_id"]).height == 5  # the other shard
    # Nothing left to do for a file that is gone or was replaced by a good one meanwhile.
    assert quarantine(tmp_path, [d]) == []


def test_quarantine_path(tmp_path):
    layout = RunLayout(tmp_path)
    p = tmp_path / "rewrites" / "dataset=d" / "split=train" / "part-00002.parquet"
    assert layout.quarantine_path(p) == tmp_path / "quarantine" / p.relative_to(tmp_path)
    assert layout.quarantine_path(p, 2).name == "part-00002.parquet.2"
    with pytest.raises(StorageError, match="not under the run root"):
        layout.quarantine_path("/elsewhere/part-00000.parquet")
    with pytest.raises(StorageError, match="already in quarantine"):
        layout.quarantine_path(layout.quarantine_path(p))
