"""Fixtures for the task-type tests: the demo benchmarks' items, and a digest of the answers a
task type's simulator hooks give on them, to compare with the digest of what the simulator wrote
before it asked the task types."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

import dars.benchmarks as B
from dars.benchmarks.base import Item

DEMOS = {"mc": "demo_mc", "math": "demo_math", "span": "demo_span"}


@pytest.fixture(scope="module")
def demo_items() -> dict[str, list[Item]]:
    return {name: B.get(name).load() for name in DEMOS.values()}


@pytest.fixture
def demo_answers_digest(demo_items) -> Callable[[str], str]:
    """``demo_answers_digest(task_type)``: sha256 of one line per item of the task type's demo
    benchmark (100 items), tab-separated: the query id, the final line of a correct response,
    ``repr(partial_answer(item))`` and the final line of a wrong response for each u in
    0, 1/40, …, 39/40; lines joined by newlines.

    The expected digests in the tests were computed ONCE with this recipe from the simulator
    before it used the hooks (``dars/sim/text.py`` at d3d986f: the last line of ``ending``, and
    ``partial_answer``), so they pin the hooks to what the simulator wrote on every demo item."""

    def digest(task_type: str) -> str:
        task = B.get_task_type(task_type)
        lines = []
        for item in demo_items[DEMOS[task_type]]:
            parts = [item.query_id, task.final_line(task.gold_text(item))]
            parts.append(repr(task.partial_answer(item)))
            parts += [task.final_line(task.wrong_answer(item, i / 40)) for i in range(40)]
            lines.append("\t".join(parts))
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    return digest
