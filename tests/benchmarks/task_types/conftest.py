"""The simulated pool as it answers today (``dars.llm.sim``), to check that each task type's
simulator hooks give exactly the same answers, so switching the simulator to them is
behaviour-preserving."""

from __future__ import annotations

import pytest

import dars.benchmarks as B
from dars.benchmarks.base import Item
from dars.llm.client import CallKey
from dars.llm.sim import SimWorld

SIM_MODEL = "mid"


@pytest.fixture(scope="module")
def demo_items() -> dict[str, list[Item]]:
    return {name: B.get(name).load() for name in ("demo_mc", "demo_math", "demo_span")}


@pytest.fixture
def sim_world() -> SimWorld:
    return SimWorld()


@pytest.fixture
def sim_ending(sim_world):
    """``sim_ending(dataset, item, kind, decode_id)`` → (the last line of the simulator's
    response of that outcome kind, the uniform draw it used to pick a wrong answer)."""

    def ending(dataset: str, item: Item, kind: str, decode_id: int = 0) -> tuple[str, float]:
        sim_world.register_items(dataset, [item])
        key = CallKey(dataset, "train", item.query_id, SIM_MODEL, -1, decode_id)
        kf = (dataset, item.query_id, SIM_MODEL, -1, decode_id)
        text = sim_world._ending(key, item, kind, kf)
        return text.splitlines()[-1], sim_world._u("wrong", *kf)

    return ending
