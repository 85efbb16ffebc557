"""Shared fixtures for the flow tests.

``prefect_harness`` starts one temporary Prefect server (SQLite in a temp dir) for the whole
session; request it in every test that runs a flow. Starting it costs seconds, so flow tests
are few and share it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# ``tests.simstore`` and other shared helpers import as ``tests.*``.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # As generous as the CLI's default (dars/env.py): on a loaded 2-core machine the server has
    # taken over a minute to start, and a 60 s limit then failed every flow test at setup.
    with prefect_test_harness(server_startup_timeout=600):
        yield


@pytest.fixture
def quiet_prefect_console():
    """Detach Prefect's console handlers: they keep the stream of the first CliRunner invocation,
    which is closed by the next one (a test-runner artefact; a real `dars` process has one)."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    removed = []
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in list(lg.handlers):
            if isinstance(h, PrefectConsoleHandler):
                lg.removeHandler(h)
                removed.append((lg, h))
    yield
    for lg, h in removed:
        lg.addHandler(h)
