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


GPQA_ROWS = [
    {
        "Record ID": "recA1",
        "Question": "Which particle mediates the electromagnetic force?",
        "Correct Answer": "Photon",
        "Incorrect Answer 1": "Gluon",
        "Incorrect Answer 2": "W boson",
        "Incorrect Answer 3": "Graviton",
        "Subdomain": "Particle physics",
        "High-level domain": "Physics",
    },
    {
        "Record ID": "recB2",
        "Question": "What is the oxidation state of Mn in KMnO4?",
        "Correct Answer": "+7",
        "Incorrect Answer 1": "+2",
        "Incorrect Answer 2": "+4",
        "Incorrect Answer 3": "+6",
        "Subdomain": "Inorganic chemistry",
        "High-level domain": "Chemistry",
    },
    {
        "Record ID": "recC3",
        "Question": "Which organelle hosts oxidative phosphorylation?",
        "Correct Answer": "Mitochondrion",
        "Incorrect Answer 1": "Golgi apparatus",
        "Incorrect Answer 2": "Lysosome",
        "Incorrect Answer 3": "Ribosome",
        "Subdomain": "Molecular Biology",
        "High-level domain": "Biology",
    },
]


@pytest.fixture
def gpqa_rows() -> list[dict[str, str]]:
    """Three made-up rows in the GPQA hub schema (GPQA itself must not be republished)."""
    return [dict(r) for r in GPQA_ROWS]


def _write_table(rows: list[dict], path: Path) -> Path:
    import polars as pl

    df = pl.DataFrame(rows)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path


@pytest.fixture
def write_table():
    """``write_table(rows, path)``: ``rows`` written as .csv or .parquet (by suffix); the path."""
    return _write_table
