"""The money figures (``tests/reliability/money.py``) in quick mode: every one meets its target."""

from __future__ import annotations

import pytest

from tests.reliability.figures import assert_all_ok
from tests.reliability.money import measure


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_money_figures_hold(tmp_path):
    figures = measure(tmp_path, quick=True)
    assert len(figures) == 5 + 9 + 3
    assert_all_ok(figures)
