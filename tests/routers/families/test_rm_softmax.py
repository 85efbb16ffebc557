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
