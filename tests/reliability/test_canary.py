"""Canary keys echoed by a provider never reach a file, a log or Prefect's database
(``tests/reliability/canary.py``)."""

from __future__ import annotations

import pytest

from tests.reliability.canary import measure
from tests.reliability.figures import assert_all_ok


@pytest.mark.slow
def test_a_canary_key_reaches_nothing_a_run_writes(tmp_path):
    figures = measure(tmp_path, quick=True)
    assert len(figures) == 7
    assert_all_ok(figures)


def test_no_reliability_module_shadows_the_standard_library():
    # money_helper.py runs as a script from this directory; a `secrets.py` here once replaced the
    # standard library's in it (numpy: "cannot import name randbits").
    import sys
    from pathlib import Path

    names = {p.stem for p in Path(__file__).parent.glob("*.py")}
    assert not names & set(sys.stdlib_module_names)
