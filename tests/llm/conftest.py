"""Fixtures for the LLM tests: litellm imported once, a fake OpenAI-compatible server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# ``tests.fakeserver`` is a shared helper; make the repo root importable even when pytest is not
# started from it (pyproject's pytest ``pythonpath`` would be the cleaner place for this).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


from tests.fakeserver import FakeOpenAIServer  # noqa: E402


@pytest.fixture(scope="session")
def litellm_module():
    from dars.llm import get_litellm

    return get_litellm()


@pytest.fixture
def server(litellm_module) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv
