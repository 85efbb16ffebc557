"""Every family learns an easy task: beats random routing and approaches the oracle."""

from __future__ import annotations

import pytest

from dars.routers import available_routers

FAMILIES = available_routers()


def _captured(task, router) -> float:
    """Fraction of the random-to-oracle utility gap captured by the router's routes."""
    value = task.value(router.route(task.X_test))
    return (value - task.random_value()) / (task.oracle_value() - task.random_value())


@pytest.mark.parametrize("family", FAMILIES)
def test_family_learns_the_best_model_from_dars_targets(family, task, fitted_dars):
    # The best model is a smooth function of a 3-d latent; all families reach ~0.85-0.95 here,
    # so 0.6 is a robust margin, and far above random routing (0).
    assert _captured(task, fitted_dars[family]) > 0.6


@pytest.mark.parametrize("family", FAMILIES)
def test_family_learns_from_one_noisy_single_shot_draw(family, task, fitted_single):
    # One Bernoulli outcome per (query, model) is much noisier; still clearly above random.
    assert _captured(task, fitted_single[family]) > 0.35
