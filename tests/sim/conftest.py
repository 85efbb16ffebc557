"""Fixtures for the simulator tests: litellm imported once (through the client, which installs
the ``dars-sim`` provider), the demo benchmarks registered with the process-wide world."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import dars.benchmarks as B
from dars.benchmarks.base import Item
from dars.sim import SimWorld, register_items

DEMOS = ("demo_mc", "demo_math", "demo_span")


@pytest.fixture(scope="session")
def litellm_module():
    from dars.llm import get_litellm

    return get_litellm()


@pytest.fixture(scope="module")
def demo() -> dict[str, tuple[B.Benchmark, list[Item]]]:
    """The three demo benchmarks (60 items each), registered with the process-wide world."""
    out = {}
    for name in DEMOS:
        bench = B.get(name, n_items=60)
        items = bench.load()
        register_items(name, items)
        out[name] = (bench, items)
    return out


def _intended_score(world: SimWorld, dataset: str, item: Item, kind: str) -> float:
    if kind == "correct":
        return 1.0
    if kind == "partial":
        return world.partial_answer(dataset, item)[1]
    return 0.0


@pytest.fixture
def intended_score() -> Callable[[SimWorld, str, Item, str], float]:
    """The score a decode of outcome ``kind`` must get from the benchmark's real scorer."""
    return _intended_score
