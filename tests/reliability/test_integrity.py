"""Store integrity: every corrupt-store case × command gives one clear line, a non-zero exit
where data is damaged, no traceback and an unchanged store (:mod:`tests.reliability.integrity`)."""

from __future__ import annotations

from tests.reliability.figures import assert_all_ok
from tests.reliability.integrity import CASES, COMMANDS, measure


def test_integrity_figures(tmp_path):
    figures = measure(tmp_path, quick=True)
    table = [f for f in figures if f.topic.startswith("corrupt store")]
    assert len(table) == len(CASES) * len(COMMANDS)
    assert_all_ok(figures)
