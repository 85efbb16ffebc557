import os
import subprocess
import sys
import textwrap

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from dars.storage import (
    OBSERVATION_KEY,
    OBSERVATION_POLARS_SCHEMA,
    RunLayout,
    StorageError,
    WriteCounts,
    atomic_write_table,
    done_keys,
    key_shards,
    rewrite_keys,
    scan_observations,
    scan_rewrites,
    validate_observations,
    write_observations,
    write_rewrites,
)
from dars.storage.schemas import OBSERVATION_FILE_SCHEMA

KEY = list(OBSERVATION_KEY)


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _store(root) -> pl.DataFrame:
    return scan_observations(root).collect().sort(KEY)


def test_round_trip_exact_paths_and_rows(root, make_obs):
    rows = [
        make_obs("q1", "m1", 0, 0),
        make_obs("q1", "m1", 0, 1, status="error"),
        make_obs("q2", "m2", -1, 0),
        make_obs("q3", "m1", -1, 2, split="test", dataset="gpqa"),
    ]
    counts = write_observations(root, rows, shard=3)
    assert counts == WriteCounts(written_ok=3, written_error=1, skipped_ok=0)
    parquet = [f for f in _files(root) if f.endswith(".parquet")]
    assert parquet == [
        "observations/dataset=demo/split=train/model=m1/part-00003.parquet",
        "observations/dataset=demo/split=train/model=m2/part-00003.parquet",
        "observations/dataset=gpqa/split=test/model=m1/part-00003.parquet",
    ]
    # Partition columns live only in the path; the file has exactly the declared physical schema.
    schema = pq.read_schema(root / parquet[0])
    assert schema.remove_metadata().equals(OBSERVATION_FILE_SCHEMA)
    assert not {"dataset", "split", "model"} & set(schema.names)
    assert_frame_equal(_store(root), validate_observations(rows).sort(KEY))


def test_hive_partition_values_stay_strings(root, make_obs):
    # A model called "7" would be inferred as an integer by a reader without a hive schema.
    write_observations(root, [make_obs(model="7"), make_obs(model="8")], shard=0)
    out = scan_observations(root, model="7").collect()
    assert out.schema["model"] == pl.String
    assert out["model"].to_list() == ["7"]


def test_scan_filters_and_empty_store(root, make_obs):
    empty = scan_observations(root).collect()
    assert empty.height == 0 and dict(empty.schema) == OBSERVATION_POLARS_SCHEMA
    rows = [make_obs(f"q{i}", m) for i in range(3) for m in ("m1", "m2")]
    rows.append(make_obs("q9", "m3", status="error"))
    write_observations(root, rows, shard=0)
    assert scan_observations(root, model=["m1", "m3"]).collect().height == 4
    assert scan_observations(root, model="m3", status="ok").collect().height == 0
    assert scan_observations(root, model=None, query_id="q1").collect().height == 2
    with pytest.raises(StorageError, match="unknown filter column 'modle'"):
        scan_observations(root, modle="m1")


def test_error_then_ok_replaces_and_accumulates_attempts(root, make_obs):
    assert write_observations(root, [make_obs(status="error", attempts=3)], shard=0) == (
        WriteCounts(0, 1, 0)
    )
    assert write_observations(root, [make_obs(status="error", attempts=2)], shard=0) == (
        WriteCounts(0, 1, 0)
    )
    out = _store(root)
    assert out.height == 1 and out["attempts"].to_list() == [5]
    assert write_observations(root, [make_obs(status="ok", attempts=1, score=0.5)], shard=0) == (
        WriteCounts(1, 0, 0)
    )
    out = _store(root)
    assert out.select("status", "attempts", "score").rows() == [("ok", 6, 0.5)]


def test_ok_is_never_overwritten_or_duplicated(root, make_obs):
    write_observations(root, [make_obs(score=1.0), make_obs("q2", status="error")], shard=0)
    path = RunLayout(root).observation_file("demo", "train", "m1", 0)
    before = (path.stat().st_ino, path.stat().st_mtime_ns)
    # The row hits a stored ok key: nothing is written, the file is not even rewritten.
    counts = write_observations(root, [make_obs(score=0.0)], shard=0)
    assert counts == WriteCounts(0, 0, 1)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == before
    counts = write_observations(root, [make_obs(status="error"), make_obs("q2")], shard=0)
    assert counts == WriteCounts(written_ok=1, written_error=0, skipped_ok=1)
    out = _store(root)
    assert out.select("query_id", "status", "score").rows() == [
        ("q1", "ok", 1.0),
        ("q2", "ok", 1.0),
    ]


def test_ok_key_in_another_shard_is_skipped(root, make_obs):
    write_observations(root, [make_obs("q1")], shard=0)
    counts = write_observations(root, [make_obs("q1"), make_obs("q2")], shard=1)
    assert counts == WriteCounts(1, 0, 1)
    assert _store(root)["query_id"].to_list() == ["q1", "q2"]
    assert key_shards(root, "demo", "train", "m1").sort("query_id")["shard"].to_list() == [0, 1]


def test_done_keys_partition_and_shard(root, make_obs):
    write_observations(root, [make_obs("q1"), make_obs("q2", status="error")], shard=0)
    write_observations(root, [make_obs("q3", decode_id=4)], shard=1)
    write_observations(root, [make_obs("q4", model="m2")], shard=0)
    keys = done_keys(root, "demo", "train", "m1")
    assert keys.columns == KEY
    assert sorted(keys.rows()) == [
        ("demo", "train", "q1", "m1", 0, 0),
        ("demo", "train", "q3", "m1", 0, 4),
    ]
    assert done_keys(root, "demo", "train", "m1", shard=1)["query_id"].to_list() == ["q3"]
    assert done_keys(root, "demo", "test", "m1").height == 0
    assert keys.schema["rewrite_id"] == pl.Int32


def test_invalid_rows_write_nothing(root, make_obs):
    with pytest.raises(StorageError, match="column 'score'"):
        write_observations(root, [make_obs("q1"), make_obs("q2", score=2.0)], shard=0)
    assert not root.exists()


def test_file_with_foreign_schema_is_refused(root, make_obs):
    path = RunLayout(root).observation_file("demo", "train", "m1", 0)
    path.parent.mkdir(parents=True)
    pl.DataFrame({"query_id": ["q1"]}).write_parquet(path)
    with pytest.raises(StorageError, match=r"part-00000\.parquet: schema differs"):
        write_observations(root, [make_obs()], shard=0)


def test_failed_rename_leaves_old_file_and_no_temp(root, make_obs, monkeypatch):
    write_observations(root, [make_obs("q1")], shard=0)
    path = RunLayout(root).observation_file("demo", "train", "m1", 0)
    old = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_observations(root, [make_obs("q2")], shard=0)
    assert path.read_bytes() == old
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_killed_writer_leaves_only_an_ignored_temp_file(root, make_obs):
    """A process killed between writing the temporary file and renaming it."""
    write_observations(root, [make_obs("q1")], shard=0)
    part = RunLayout(root).observation_partition("demo", "train", "m1")
    script = textwrap.dedent(
        f"""
        import datetime
        import os
        import dars.storage.store as store
        def die(src, dst):
            os._exit(9)  # no cleanup, like SIGKILL
        store.os.replace = die
        row = {make_obs("q2")!r}
        store.write_observations({str(root)!r}, [row], shard=0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    temps = [p.name for p in part.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1 and temps[0].startswith(".part-00000.parquet.")

    expected = [("q1",)]
    assert scan_observations(root).select("query_id").collect().rows() == expected
    glob = f"{root}/observations/**/*.parquet"
    assert (
        duckdb.sql(
            f"select query_id from read_parquet('{glob}', hive_partitioning=true)"
        ).fetchall()
        == expected
    )
    table = ds.dataset(root / "observations", format="parquet", partitioning="hive").to_table()
    assert table.column("query_id").to_pylist() == ["q1"]

    # The next write to that shard clears the leftover.
    write_observations(root, [make_obs("q2")], shard=0)
    assert [p.name for p in part.iterdir() if p.name.endswith(".tmp")] == []
    assert _store(root)["query_id"].to_list() == ["q1", "q2"]


def test_atomic_write_table_creates_directories(tmp_path):
    target = tmp_path / "a" / "b" / "t.parquet"
    atomic_write_table(pl.DataFrame({"x": [1, 2]}).to_arrow(), target, metadata={b"k": b"v"})
    assert pq.read_table(target).column("x").to_pylist() == [1, 2]
    assert pq.read_schema(target).metadata[b"k"] == b"v"
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_rewrites_round_trip_skip_and_replace(root, make_rewrite):
    rows = [make_rewrite("q1", 0), make_rewrite("q1", 1), make_rewrite("q2", 0, split="test")]
    assert write_rewrites(root, rows, shard=0).written == 3
    assert sorted(f for f in _files(root) if f.endswith(".parquet")) == [
        "rewrites/dataset=demo/split=test/part-00000.parquet",
        "rewrites/dataset=demo/split=train/part-00000.parquet",
    ]
    again = write_rewrites(
        root, [make_rewrite("q1", 0, text="new"), make_rewrite("q1", 2)], shard=0
    )
    assert (again.written, again.skipped) == (1, 1)
    texts = scan_rewrites(root, split="train").collect().sort("query_id", "rewrite_id")["text"]
    assert texts.to_list() == [
        "Rephrased question q1/0",
        "Rephrased question q1/1",
        "Rephrased question q1/2",
    ]
    replaced = write_rewrites(root, [make_rewrite("q1", 0, text="new")], shard=0, replace=True)
    assert replaced.written == 1
    out = scan_rewrites(root, query_id="q1", rewrite_id=0).collect()
    assert out["text"].to_list() == ["new"] and out.height == 1
    assert sorted(rewrite_keys(root, "demo", "train").rows()) == [
        ("demo", "train", "q1", 0),
        ("demo", "train", "q1", 1),
        ("demo", "train", "q1", 2),
    ]
    assert rewrite_keys(root, "demo", "train", shard=5).height == 0


def test_concurrent_writers_of_one_shard_lose_nothing(root, make_obs):
    # A retried task may overlap the attempt it replaces; the shard lock serialises them.
    from concurrent.futures import ThreadPoolExecutor

    batches = [[make_obs(f"q{w}", decode_id=d) for d in range(3)] for w in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        counts = list(pool.map(lambda rows: write_observations(root, rows, shard=0), batches))
    assert sum(c.written_ok for c in counts) == 18
    assert _store(root).height == 18


def test_atomic_table_writer_publishes_whole_or_nothing(tmp_path):
    """A batched write appears at its path only when its block ends cleanly: an exception after
    some batches leaves the previous file (or none) and no temp file."""
    import pyarrow as pa

    from dars.storage.store import atomic_table_writer

    schema = pa.schema([("x", pa.int64())])
    path = tmp_path / "t" / "table.parquet"
    with atomic_table_writer(path, schema) as writer:
        for i in range(3):
            writer.write_table(pa.table({"x": [i, i + 10]}, schema=schema))
    assert pq.read_table(path).column("x").to_pylist() == [0, 10, 1, 11, 2, 12]

    with pytest.raises(RuntimeError, match="boom"):
        with atomic_table_writer(path, schema) as writer:
            writer.write_table(pa.table({"x": [99]}, schema=schema))
            raise RuntimeError("boom")
    assert pq.read_table(path).column("x").to_pylist() == [0, 10, 1, 11, 2, 12]
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.parquet"]
