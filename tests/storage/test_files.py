"""The store's file set (what every reader reads) and the verified read of one shard file."""

from __future__ import annotations

import shutil

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dars.storage import (
    RunLayout,
    StorageError,
    done_keys,
    read_observations,
    scan_observations,
    scan_rewrites,
    write_observations,
    write_rewrites,
)
from dars.storage.files import (
    OBSERVATIONS,
    REWRITES,
    DamagedFileError,
    list_files,
    read_shard_file,
)
from dars.storage.schemas import OBSERVATION_FILE_SCHEMA, OBSERVATION_POLARS_SCHEMA
from tests.reliability.integrity import flip_bytes, flipped_cost_store

KEY = ["model", "query_id", "decode_id"]


def _store(root, make_obs, n: int = 6):
    """Two models, two shards each; returns the path of model a's shard 0."""
    for model in ("a", "b"):
        for shard in (0, 1):
            rows = [make_obs(f"q{shard}-{i}", model, 0, 0) for i in range(n)]
            write_observations(root, pl.DataFrame(rows), shard=shard)
    return RunLayout(root).observation_file("demo", "train", "a", 0)


def _one_line_naming(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and "dars status --repair" in msg
    return msg


def test_file_set_classifies_every_entry(tmp_path, make_obs):
    target = _store(tmp_path, make_obs)
    part_dir = target.parent
    shutil.copy(target, part_dir / "backup.parquet")  # a stray copy (duplicate keys)
    (part_dir / "junk.parquet").write_bytes(b"not parquet")
    (part_dir / "part-1.parquet").write_bytes(b"")  # not a shard name
    (part_dir / ".part-00000.parquet.x.tmp").write_bytes(b"half")  # a killed writer's temp
    (part_dir / "old").mkdir()
    (tmp_path / "observations" / "dataset=demo" / "notes.txt").write_text("x")
    (tmp_path / "observations" / "dataset=_hidden").mkdir()  # an unsafe partition value
    (tmp_path / "observations" / "dataset=demo" / "split=dev").mkdir()  # not a split
    files = list_files(tmp_path, OBSERVATIONS)
    assert [(f.partition, f.shard) for f in files.parts] == [
        ((("dataset", "demo"), ("split", "train"), ("model", m)), s)
        for m in ("a", "b")
        for s in (0, 1)
    ]
    assert sorted(p.name for p in files.strays) == sorted(
        ["backup.parquet", "junk.parquet", "part-1.parquet", "old", "notes.txt"]
        + ["dataset=_hidden", "split=dev"]
    )
    assert files.damaged == []
    # Partition filters prune directories.
    only_b = list_files(tmp_path, OBSERVATIONS, model="b")
    assert {f.partition[2][1] for f in only_b.parts} == {"b"}
    assert list_files(tmp_path / "nothing", REWRITES).parts == []


def test_strays_are_never_read(tmp_path, make_obs):
    """Item 8: a backup copy and a junk file beside the shards change nothing any reader sees."""
    target = _store(tmp_path, make_obs)
    before = read_observations(tmp_path).sort(KEY)
    shutil.copy(target, target.parent / "backup.parquet")
    (target.parent / "junk.parquet").write_bytes(b"\x00" * 64)
    assert scan_observations(tmp_path).collect().sort(KEY).equals(before)
    assert read_observations(tmp_path).sort(KEY).equals(before)
    assert done_keys(tmp_path, "demo", "train", "a").height == 12


def test_a_directory_in_place_of_a_shard_fails_every_reader(tmp_path, make_obs):
    """Item 8: the shard's data is missing, so no reader may return the rest as if complete."""
    target = _store(tmp_path, make_obs)
    target.unlink()
    target.mkdir()
    files = list_files(tmp_path, OBSERVATIONS)
    assert [e.path for e in files.damaged] == [target]
    readers = [
        lambda: scan_observations(tmp_path).collect(),
        lambda: scan_observations(tmp_path, model="a").select("query_id").collect(),
        lambda: read_observations(tmp_path, ["status"]),
        lambda: done_keys(tmp_path, "demo", "train", "a"),
        lambda: done_keys(tmp_path, "demo", "train", "a", shard=0),
        lambda: write_observations(tmp_path, [make_obs("new", "a", 0, 0)], shard=1),
    ]
    for read in readers:
        with pytest.raises(DamagedFileError) as exc:
            read()
        assert "a directory where a shard file should be" in _one_line_naming(exc, target)
    # A partition the filter prunes is not read, so it cannot fail.
    assert scan_observations(tmp_path, model="b").collect().height == 12


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("zero", "empty (0 bytes)"),
        ("truncated", "not a readable Parquet file"),
        ("footer", "not a readable Parquet file"),
        ("schema", "schema differs from the store's: missing column(s)"),
        ("flip", "CRC checksum verification failed"),
    ],
)
def test_damaged_files_raise_one_line_naming_them(tmp_path, make_obs, damage, reason):
    target = _store(tmp_path, make_obs)
    data = target.read_bytes()
    if damage == "zero":
        target.write_bytes(b"")
    elif damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "footer":  # the footer length and metadata overwritten, magic intact
        target.write_bytes(data[:-40] + b"\xff" * 36 + data[-4:])
    elif damage == "schema":
        pq.write_table(pa.table({"query_id": ["q"], "score": ["1.0"]}), target)
    else:
        flip_bytes(target, "cost_usd", seed=1)
    with pytest.raises(DamagedFileError) as exc:
        scan_observations(tmp_path).collect()
    assert reason in _one_line_naming(exc, target)
    assert isinstance(exc.value, StorageError) and exc.value.path == target


def test_flipped_bytes_in_cost_are_caught_not_returned(tmp_path):
    """Item 7: 4 random bytes in ``cost_usd`` used to change values silently (10 of 20 seeds
    before page checksums; the rest failed without a path). Now every seed raises, naming the
    file, on the lazy scan and on the eager reader alike."""
    for seed in range(20):
        root = tmp_path / str(seed)
        path = flipped_cost_store(root, seed)
        for read in (
            lambda r=root: scan_observations(r).select("cost_usd").collect(),
            lambda r=root: read_observations(r, ["cost_usd"]),
        ):
            with pytest.raises(DamagedFileError) as exc:
                read()
            _one_line_naming(exc, path)


def test_files_written_without_checksums_still_read(tmp_path, make_obs):
    target = _store(tmp_path, make_obs)
    before = read_observations(tmp_path).sort(KEY)
    table = pq.read_table(target)
    pq.write_table(table, target, compression="zstd", write_page_checksum=False)
    assert read_observations(tmp_path).sort(KEY).equals(before)
    assert scan_observations(tmp_path).collect().sort(KEY).equals(before)


def test_read_shard_file_missing_and_projection(tmp_path, make_obs):
    target = _store(tmp_path, make_obs)
    assert read_shard_file(tmp_path / "nope.parquet", OBSERVATION_FILE_SCHEMA) is None
    df = read_shard_file(target, OBSERVATION_FILE_SCHEMA, ["query_id", "status"])
    assert df is not None and df.columns == ["query_id", "status"] and df.height == 6


def test_lazy_scan_pushes_projection_predicate_and_limit(tmp_path, make_obs, make_rewrite):
    _store(tmp_path, make_obs)
    lf = scan_observations(tmp_path, model="b").filter(pl.col("query_id").str.starts_with("q1"))
    assert lf.select("query_id").collect().height == 6
    assert lf.select(pl.len()).collect().item() == 6
    assert scan_observations(tmp_path).head(3).collect().height == 3
    lazy = scan_observations(tmp_path)
    assert lazy.collect().schema == lazy.collect_schema() == pl.Schema(OBSERVATION_POLARS_SCHEMA)
    write_rewrites(tmp_path, [make_rewrite("q1", r) for r in range(3)], shard=0)
    assert scan_rewrites(tmp_path, rewrite_id=[0, 2]).collect()["rewrite_id"].to_list() == [0, 2]
    with pytest.raises(StorageError, match="unknown filter column"):
        scan_observations(tmp_path, nope=1)
