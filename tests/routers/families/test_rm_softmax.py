"""rm_softmax: a λ-conditioned softmax policy in torch that scores models instead of predicting
q/c/σ, with β folded into its regrets."""

from __future__ import annotations

import numpy as np
import pytest

from dars.routers import RouterTags, get_router_class, make_router


def test_declares_its_tags():
    assert get_router_class("rm_softmax").tags == RouterTags(
        predicts_stats=False, folds_beta=True, lam_conditioned=True, needs_torch=True
    )


def test_scores_are_log_probabilities_and_no_stats(task, fitted_dars):
    fitted = fitted_dars["rm_softmax"]
    for lam in (0.0, 0.05, 0.5):
        scores = fitted.predict_utility(task.X_test, lam, fitted.beta)
        np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(NotImplementedError, match="does not predict q/c/σ"):
        fitted.predict_stats(task.X_test)


def test_folded_risk_beta_is_enforced(task, fitted_dars, fitted_single):
    with pytest.raises(ValueError, match="refit with beta=0.5"):
        fitted_dars["rm_softmax"].predict_utility(task.X_test, 0.05, 0.5)
    fitted_single["rm_softmax"].predict_utility(task.X_test, 0.05, 0.5)  # no spread: any β


@pytest.mark.parametrize("param", [{"lam_grid": ()}, {"hidden": 0}, {"beta": -1.0}])
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"rm_softmax: {name}"):
        make_router("rm_softmax", **param).fit(task.X_train, task.targets)


#: The demo's Pareto λ grid and its pool's normalised costs (runs/demo: cheap-weak, cheap-math,
#: mid, strong-expensive, flash, strong-cheap), at the demo's sizes (80 train, 40 test queries,
#: 384-dimensional embeddings).
DEMO_LAM_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
DEMO_COSTS = np.array([0.002, 0.019, 0.021, 0.5, 0.011, 0.027])


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_routes_respond_to_lam_on_a_demo_like_problem(seed):
    """Regression: with λ entering only the hidden layer as λ / max(grid), the policy learned to
    ignore it and the demo's Pareto sweep was one (Q, C) point per dataset and view."""
    from dars.routers.synthetic import make_synthetic_task
    from dars.routers.targets import Targets

    task = make_synthetic_task(n_train=80, n_test=40, n_features=384, n_models=6, seed=seed)
    rng = np.random.default_rng(seed)
    c_train = np.clip(DEMO_COSTS + rng.normal(0, 0.002, task.targets.q.shape), 0, 1)
    c_test = np.clip(DEMO_COSTS + rng.normal(0, 0.002, task.p_test.shape), 0, 1)
    targets = Targets(
        q=task.targets.q, c=c_train, sigma=task.targets.sigma, models=task.targets.models
    )
    router = make_router("rm_softmax", lam_grid=DEMO_LAM_GRID, random_state=0)
    router.fit(task.X_train, targets)
    rows = np.arange(task.X_test.shape[0])
    points = set()
    for lam in DEMO_LAM_GRID:
        routed = router.route(task.X_test, lam=lam)
        points.add((task.p_test[rows, routed].mean(), c_test[rows, routed].mean()))
    assert len(points) > 1
