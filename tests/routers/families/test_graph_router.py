"""graph_router: a query–model edge scorer in torch."""

from __future__ import annotations

import pytest

from dars.routers import RouterTags, get_router_class, make_router


def test_declares_torch():
    assert get_router_class("graph_router").tags == RouterTags(needs_torch=True)


def test_predicts_sigma_only_from_targets_with_a_spread(task, fitted_dars, fitted_single):
    assert (fitted_dars["graph_router"].predict_stats(task.X_test).sigma >= 0).all()
    assert fitted_single["graph_router"].predict_stats(task.X_test).sigma is None


@pytest.mark.parametrize("param", [{"embed_dim": 0}, {"hidden": 0}, {"weight_decay": -1.0}])
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"graph_router: {name}"):
        make_router("graph_router", **param).fit(task.X_train, task.targets)
