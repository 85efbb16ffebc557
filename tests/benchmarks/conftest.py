"""Shared fixtures for the benchmark tests: real data files (skipped when absent), offline hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not DATA.is_dir():  # the tree may sit elsewhere; DARS_TEST_DATA points at it
    DATA = Path(os.environ.get("DARS_TEST_DATA", "/work/shared/data"))


def _data_file(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"real data file {path} not available")
    return path


@pytest.fixture(scope="session")
def math500_file() -> Path:
    return _data_file("math500_test.jsonl")


@pytest.fixture(scope="session")
def drop_dev_file() -> Path:
    return _data_file("drop_v0_dev.jsonl.gz")


@pytest.fixture(scope="session")
def drop_nested_file() -> Path:
    return _data_file("drop_allennlp_test_fixture.json")


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    """Loaders must never reach for the network in these tests (tests that simulate the hub
    override this)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """An empty benchmark cache, selected through DARS_CACHE_DIR."""
    root = tmp_path / "dars-cache"
    monkeypatch.setenv("DARS_CACHE_DIR", str(root))
    return root / "benchmarks"
