"""Where rows come from: the cache location, fast offline failure that says how to provide a
file, and the hub path (huggingface_hub replaced by local files)."""

from __future__ import annotations

import time

import pytest

import dars.benchmarks as B
from dars.benchmarks.base import BenchmarkUnavailableError
from dars.storage.cache import benchmark_cache_dir, benchmark_cache_file


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("DARS_CACHE_DIR", str(tmp_path / "c"))
    assert benchmark_cache_dir() == tmp_path / "c" / "benchmarks"
    assert benchmark_cache_file("math500") == tmp_path / "c" / "benchmarks" / "math500.parquet"
    assert benchmark_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("DARS_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert benchmark_cache_dir() == tmp_path / "home" / ".cache" / "dars" / "benchmarks"


@pytest.mark.parametrize(
    ("name", "cache_name", "extra"),
    [
        ("gpqa", "gpqa_main.parquet", "HF_TOKEN"),
        ("math500", "math500.parquet", "HuggingFaceH4/MATH-500"),
        ("drop800", "drop_validation.parquet", "ucinlp/drop"),
    ],
)
@pytest.mark.parametrize("how", ["offline_env", "no_route"])
def test_offline_failure_is_fast_and_says_how(cache_dir, monkeypatch, name, cache_name, extra, how):
    if how == "offline_env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # hub allowed but unreachable: an endpoint nobody listens on
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(BenchmarkUnavailableError) as err:
        B.get(name).load()
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "path=" in msg and str(cache_dir / cache_name) in msg and extra in msg
    assert ("HF_HUB_OFFLINE is set" in msg) == (how == "offline_env")


def _hub_allowed(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("dars.benchmarks.sources._hub_reachable", lambda *a, **k: None)


def test_hub_download_is_cached_as_parquet(
    cache_dir, monkeypatch, tmp_path, gpqa_rows, write_table
):
    """The hub path with huggingface_hub replaced by a local file: first load downloads into the
    cache (asking for the right repo and file), the second reads the cache only."""
    _hub_allowed(monkeypatch)
    src = write_table(gpqa_rows, tmp_path / "gpqa_main.csv")
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs["repo_type"], kwargs["etag_timeout"]))
        return str(src)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    first = B.get("gpqa").load()
    assert calls == [("Idavidrein/gpqa", "gpqa_main.csv", "dataset", 10.0)]
    assert (cache_dir / "gpqa_main.parquet").is_file()
    assert B.get("gpqa").load() == first and len(calls) == 1


def test_gated_hub_error_says_how_to_get_access(cache_dir, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    _hub_allowed(monkeypatch)

    def gated(*args, **kwargs):
        err = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(err, "401 gated")
        raise err

    monkeypatch.setattr("huggingface_hub.hf_hub_download", gated)
    with pytest.raises(BenchmarkUnavailableError, match="gated") as err:
        B.get("gpqa").load()
    assert "HF_TOKEN" in str(err.value) and "huggingface.co/datasets/Idavidrein/gpqa" in str(
        err.value
    )
