"""Fixtures of the deployment tests: a real Prefect stack per database backend.

``sqlite_stack`` / ``postgres_stack`` (session scope) each start ``prefect server`` on 127.0.0.1
and a free port (SQLite in a temporary ``PREFECT_HOME``; PostgreSQL 15 through
``deploy/postgres-server.sh``, skipped with the reason when PostgreSQL is not installed), create
the ``dars`` process work pool, run ``prefect deploy --all --prefect-file deploy/prefect.yaml``
and start a process worker outside the repository without ``DARS_HOME``; everything is stopped
at the end of the session (process groups; the PostgreSQL cluster too). ``sqlite_chain`` /
``postgres_chain`` run the collect deployment once on a tiny config with a root and a run label
of their own and wait for the trigger chain; ``chain`` is either (parametrized).

The machinery lives in ``bench/prefect_stack.py`` (``bench/bench_trigger_chain.py`` uses it to
measure the chain's latency).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _load_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "prefect_stack", REPO / "bench" / "prefect_stack.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["prefect_stack"] = module
    spec.loader.exec_module(module)
    return module


stack_mod = _load_stack()

# ``dask scheduler`` + ``dask worker --nworkers 2 --nthreads 1 --preload dars.flows.runners`` on
# loopback, as deploy/README.md starts a cluster (yields its address and worker pids).
from tests.flows.test_runners import dask_cluster  # noqa: E402, F401 - a fixture


@pytest.fixture(scope="session")
def prefect_stack_module() -> ModuleType:
    return stack_mod


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    # Under /tmp and world-traversable: as root, PostgreSQL runs as the postgres user, which
    # must reach its cluster (pytest's own tmp directories are private to root).
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_stack() -> Iterator[Any]:
    with _workdir("dars-deploy-sqlite-") as workdir:
        with stack_mod.running_stack(workdir, "sqlite") as stack:
            yield stack


@pytest.fixture(scope="session")
def postgres_stack() -> Iterator[Any]:
    reason = stack_mod.postgres_missing()
    if reason:
        pytest.skip(f"PostgreSQL-backed server: {reason}")
    with _workdir("dars-deploy-pg-") as workdir:
        with stack_mod.running_stack(workdir, "postgres") as stack:
            yield stack


@dataclass
class Chain:
    """One collect deployment run on ``root`` (not the config's own root) with ``label``, and
    the deployment runs the trigger chain started for it (stage → flow run)."""

    stack: Any
    config: Path
    root: Path
    config_root: Path
    label: str
    collect_id: Any
    runs: dict[str, Any]
    started: datetime


def _run_chain(stack: Any, backend: str) -> Chain:
    work = stack.workdir
    config_root = work / "config-root"
    root = work / "runs" / "b"
    config = stack_mod.tiny_config(work / "tiny.yaml", config_root)
    label = f"ci-{backend}"
    started = datetime.now(UTC) - timedelta(seconds=5)
    # As a user starts it: `prefect deployment run collect/dars-collect --param …`.
    collect_id = stack.run_deployment(
        "collect/dars-collect", config=str(config), root=str(root), run_label=label
    )
    runs = stack.wait_chain(str(root), started)
    return Chain(stack, config, root, config_root, label, collect_id, runs, started)


@pytest.fixture(scope="session")
def sqlite_chain(sqlite_stack) -> Chain:
    return _run_chain(sqlite_stack, "sqlite")


@pytest.fixture(scope="session")
def postgres_chain(postgres_stack) -> Chain:
    return _run_chain(postgres_stack, "postgres")


@pytest.fixture(params=["sqlite", "postgres"])
def chain(request) -> Chain:
    return request.getfixturevalue(f"{request.param}_chain")
