"""Scoring by task-type name: the registered task type's scorer, unknown names listed."""

from __future__ import annotations

import pytest

from dars.benchmarks import get_task_type
from dars.benchmarks.scoring import score_by_task


@pytest.mark.parametrize(
    ("task", "response", "gold", "choices"),
    [
        ("mc", "Final Answer: B", "B", None),
        ("mc", "Final Answer: Gluon", "B", ("Photon", "Gluon", "W boson", "Graviton")),
        ("mc", "Final Answer: C", "B", None),
        ("math", "Final Answer: 0.5", "\\frac{1}{2}", None),
        ("math", "Final Answer: 3", 4, None),  # a non-string gold is compared as text
        ("span", "Final Answer: the Bears", ("Bears", "Chicago"), None),
        ("span", "Final Answer: 3 touchdowns", "3", None),
        ("span", "nothing", ("3",), None),
    ],
)
def test_dispatches_to_the_task_types_scorer(task, response, gold, choices):
    want = get_task_type(task).score_answer(response, gold, choices=choices)
    assert score_by_task(task, response, gold, choices=choices) == want


def test_choices_reach_the_mc_scorer():
    choices = ("Photon", "Gluon", "W boson", "Graviton")
    assert score_by_task("mc", "Final Answer: photon", "A", choices=choices).value == 1.0
    assert score_by_task("mc", "Final Answer: photon", "A").parse_ok is False


def test_score_by_task_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task type 'essay'; available: math, mc, span"):
        score_by_task("essay", "x", "y")
