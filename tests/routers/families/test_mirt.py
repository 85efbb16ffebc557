"""mirt: multidimensional item response theory in torch."""

from __future__ import annotations

import pytest

from dars.routers import RouterTags, get_router_class, make_router


def test_declares_torch():
    assert get_router_class("mirt").tags == RouterTags(needs_torch=True)


def test_quality_is_a_probability(task, fitted_dars):
    q = fitted_dars["mirt"].predict_stats(task.X_test).q
    assert ((q > 0) & (q < 1)).all()


@pytest.mark.parametrize("param", [{"lr": 0.0}, {"latent_dim": 0}, {"n_threads": 0}])
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"mirt: {name}"):
        make_router("mirt", **param).fit(task.X_train, task.targets)
