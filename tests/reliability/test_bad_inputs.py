"""Bad configs and import files, run through the CLI (see :mod:`tests.reliability.bad_inputs`):
each fails with one line naming the file and the field or row, a non-zero exit, no traceback,
and the store's files unchanged."""

from __future__ import annotations

from tests.reliability.bad_inputs import cases, measure
from tests.reliability.figures import assert_all_ok


def test_the_table_has_sixty_cases_with_distinct_names():
    table = cases()
    names = [c.name for c in table]
    assert len(table) >= 60
    assert len(set(names)) == len(names)
    assert {c.kind for c in table} == {"config", "import"}
    assert any(c.subprocess for c in table)


def test_every_bad_input_is_one_clear_line_with_the_store_unchanged(tmp_path):
    assert_all_ok(measure(tmp_path, quick=True))
