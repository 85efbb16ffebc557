"""Scoring a response by task type: the registered task type's scorer, looked up by name.

Every scorer returns a ``Score``: ``value`` in [0, 1], ``parsed`` the extracted answer (None when
nothing could be extracted) and ``parse_ok``; a response whose answer cannot be extracted scores
0. The scorers themselves live with their task types: letter match (``task_types/mc.py``), math
equivalence (``task_types/math.py``), DROP F1 (``task_types/span.py``); the shared pieces they use
are answer extraction (``parsing``), ``mathequiv`` and ``dropf1``.
"""

from __future__ import annotations

from collections.abc import Sequence

from dars.benchmarks.base import Score, get_task_type


def score_by_task(
    task_type: str, response: str, gold: object, *, choices: Sequence[str] | None = None
) -> Score:
    """Score ``response`` against ``gold`` with task type ``task_type``'s scorer; ``choices``
    (the item's options) only matter to task types that have them. Unknown task types raise,
    listing the registered ones."""
    return get_task_type(task_type).score_answer(response, gold, choices=choices)
