"""A SIGKILLed `dars collect` leaves no process behind (``tests/reliability/processes.py``)."""

from __future__ import annotations

import pytest

from tests.reliability.figures import assert_all_ok
from tests.reliability.processes import measure


@pytest.mark.slow
def test_sigkilled_runs_leave_no_orphans(tmp_path):
    figures = measure(tmp_path, quick=True)
    assert figures
    assert_all_ok(figures)
