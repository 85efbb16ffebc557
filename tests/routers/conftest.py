"""Shared fixtures: a small seeded synthetic routing task and routers fitted on it once, and a
scratch registry for families registered by a test."""

from __future__ import annotations

import pytest

from dars.routers import ROUTERS, available_routers, make_router
from dars.routers.synthetic import SyntheticTask, make_synthetic_task

FAMILIES = available_routers()


@pytest.fixture(scope="session")
def task() -> SyntheticTask:
    return make_synthetic_task(n_train=160, n_test=160, n_features=24, n_models=4, seed=0)


@pytest.fixture(scope="session")
def fitted_dars(task):
    """One router per family, default hyperparameters, fitted on the DARS-style targets."""
    return {f: make_router(f, random_state=0).fit(task.X_train, task.targets) for f in FAMILIES}


@pytest.fixture(scope="session")
def single_shot(task):
    return task.single_shot(4, seed=1)


@pytest.fixture(scope="session")
def fitted_single(task, single_shot):
    """One router per family fitted on the first single-shot draw (no sigma)."""
    return {
        f: make_router(f, random_state=0).fit(task.X_train, single_shot.draw(0)) for f in FAMILIES
    }


@pytest.fixture
def scratch_registry():
    """Families a test registers are forgotten after it (outside tests a plugin stays for the
    process); built-in families loaded during the test stay."""
    with ROUTERS.scratch():
        yield ROUTERS
