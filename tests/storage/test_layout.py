from pathlib import Path

import pytest

from dars.storage.layout import RunLayout, StorageError, shard_file_name, shard_from_file_name


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
