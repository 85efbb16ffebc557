"""Suite-wide setup: the test suite is an entry point, so it applies the offline environment
defaults (:mod:`dars.env`) before any test imports litellm, Prefect or Hugging Face. Shared
fixture: ``scratch_registries`` for tests that register a toy task type or benchmark."""

import pytest

from dars.env import apply_offline_defaults

apply_offline_defaults()


@pytest.fixture
def scratch_registries(monkeypatch):
    """Registrations made by the test are dropped afterwards: the task-type and benchmark
    registries work on a copy of their entries (built-ins loaded first, so the copy holds them)."""
    import dars.benchmarks as B  # here, not at the top: the environment is set before dars loads

    monkeypatch.setattr("dars.benchmarks.base._DEFAULT_INSTANCES", {})
    with B.TASK_TYPES.scratch(), B.BENCHMARKS.scratch():
        yield
