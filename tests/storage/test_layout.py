from pathlib import Path

import pytest

from dars.storage.layout import (
    RunLayout,
    StorageError,
    root_path,
    shard_file_name,
    shard_from_file_name,
)


def test_observation_and_rewrite_paths_are_hive_partitions():
    lay = RunLayout("/r")
    assert lay.observation_file("gpqa", "train", "qwen3-32b", 3) == Path(
        "/r/observations/dataset=gpqa/split=train/model=qwen3-32b/part-00003.parquet"
    )
    assert lay.rewrite_file("math500", "test", 0) == Path(
        "/r/rewrites/dataset=math500/split=test/part-00000.parquet"
    )


def test_later_stage_paths():
    lay = RunLayout(Path("/r"))
    assert lay.supervision_file("gpqa", "labels") == Path(
        "/r/supervision/dataset=gpqa/labels.parquet"
    )
    assert lay.model_dir("gpqa", "knn", "dars") == Path(
        "/r/models/dataset=gpqa/family=knn/supervision=dars"
    )
    assert lay.results_file("grid", "json") == Path("/r/results/grid.json")
    assert lay.report_file("report", "html") == Path("/r/report/report.html")
    assert lay.embeddings_file("sentence-transformers/all-MiniLM-L6-v2", "gpqa", "test") == Path(
        "/r/embeddings/encoder=sentence-transformers--all-MiniLM-L6-v2/dataset=gpqa/test.parquet"
    )
    assert lay.manifest_file() == Path("/r/manifest.parquet")


def test_shard_names_round_trip():
    assert shard_file_name(0) == "part-00000.parquet"
    assert shard_file_name(12345) == "part-12345.parquet"
    assert shard_from_file_name("part-00042.parquet") == 42
    with pytest.raises(StorageError, match="not a shard file name"):
        shard_from_file_name(".part-00042.parquet.abc.tmp")


@pytest.mark.parametrize("shard", [-1, 100000, True, 1.0, "3"])
def test_bad_shards_rejected(shard):
    with pytest.raises(StorageError, match="shard="):
        shard_file_name(shard)


@pytest.mark.parametrize("name", ["_hidden", ".x", "a/b", "..", "", "a=b", "a b"])
def test_unsafe_partition_values_rejected(name):
    # A value starting with '.' or '_' would be skipped by hive readers; '/' or '=' breaks paths.
    with pytest.raises(StorageError, match="model="):
        RunLayout("/r").observation_partition("gpqa", "train", name)


def test_unknown_split_lists_valid_ones():
    with pytest.raises(StorageError, match="allowed values: train, test"):
        RunLayout("/r").rewrite_partition("gpqa", "dev")


# -- the run root as a plain path or a file:// URI (issue 13) ----------------------------------


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("runs/a", Path("runs/a")),
        ("/abs/run", Path("/abs/run")),
        (Path("/abs/run"), Path("/abs/run")),
        ("file:///abs/run", Path("/abs/run")),
        ("file:///abs/run/", Path("/abs/run")),
        ("FILE:///abs/run", Path("/abs/run")),
        ("file://localhost/abs/run", Path("/abs/run")),
        ("file:///abs/my%20run", Path("/abs/my run")),
        # Checked and written at the same place (the check once expanded ~, the store did not).
        ("~/runs/a", Path.home() / "runs/a"),
    ],
)
def test_root_is_a_path_or_a_file_uri(given, path):
    assert root_path(given) == path
    assert RunLayout(given).root == path
    assert RunLayout(given).ledger_file() == path / "ledger.sqlite"


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("file://relative/run", "file:// + an absolute path"),
        ("file://", "file:// + an absolute path"),
        ("file:relative", "file:// + an absolute path"),
        ("file:///abs/run?x=1", "no query or fragment"),
        ("file://runs/a", "names host 'runs'"),
        ("file:///abs/run#x", "no query or fragment"),
    ],
)
def test_malformed_file_uri_is_one_line_naming_the_form(given, says):
    with pytest.raises(StorageError) as info:
        root_path(given)
    msg = str(info.value)
    assert "\n" not in msg and given in msg and says in msg and "file:///" in msg


@pytest.mark.parametrize("given", ["s3://bucket/prefix", "gs://b/p", "az://c/p", "hdfs://n/p"])
def test_object_store_root_is_refused_in_one_line_saying_why_and_what_to_do(given):
    with pytest.raises(StorageError) as info:
        RunLayout(given)
    msg = str(info.value)
    assert "\n" not in msg and given in msg
    for part in ("SQLite", "atomic rename", "file locks", "POSIX", "NFS", "mounted at the same"):
        assert part in msg, part
