"""Canary keys echoed by a provider never reach a file, a log or Prefect's database
(``tests/reliability/secrets.py``)."""

from __future__ import annotations

import pytest

from tests.reliability.figures import assert_all_ok
from tests.reliability.secrets import measure


@pytest.mark.slow
def test_a_canary_key_reaches_nothing_a_run_writes(tmp_path):
    figures = measure(tmp_path, quick=True)
    assert len(figures) == 7
    assert_all_ok(figures)
