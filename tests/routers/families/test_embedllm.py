"""embedllm: matrix factorisation in torch; β is folded into its quality target."""

from __future__ import annotations

import pytest

from dars.routers import RouterTags, get_router_class, make_router


def test_declares_folded_beta_and_torch():
    assert get_router_class("embedllm").tags == RouterTags(folds_beta=True, needs_torch=True)


def test_folded_risk_beta_is_enforced(task, fitted_dars, fitted_single):
    fitted = fitted_dars["embedllm"]
    assert fitted.predict_stats(task.X_test).risk_beta == fitted.beta == 0.2
    with pytest.raises(ValueError, match="refit with beta=0.5"):
        fitted.predict_utility(task.X_test, 0.05, 0.5)
    # Trained without a spread, nothing was folded in.
    assert fitted_single["embedllm"].predict_stats(task.X_test).risk_beta is None


@pytest.mark.parametrize("param", [{"epochs": 0}, {"embed_dim": 0}, {"beta": -0.1}])
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"embedllm: {name}"):
        make_router("embedllm", **param).fit(task.X_train, task.targets)
