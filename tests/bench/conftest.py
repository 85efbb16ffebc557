"""The bench scripts are files, not a package: load them by path (bench_local_server imports its
sibling local_server, which is then the same module object the tests use)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bench_local() -> ModuleType:
    return load_bench("bench_local_server")


@pytest.fixture(scope="session")
def local_server(bench_local) -> ModuleType:
    return bench_local.local_server


@pytest.fixture(scope="session")
def bench_client() -> ModuleType:
    return load_bench("bench_client")
