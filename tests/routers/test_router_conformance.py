"""Conformance of every registered router family to the Router contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from dars.routers import (
    NotFittedError,
    Router,
    Targets,
    available_routers,
    get_router_class,
    load_router,
    make_router,
)

FAMILIES = available_routers()


def test_registry_lists_the_seven_families():
    assert set(FAMILIES) >= {
        "mlp",
        "knn",
        "embedllm",
        "avengers_pro",
        "graph_router",
        "mirt",
        "rm_softmax",
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_unfitted_router_raises_and_constructor_only_stores(family, task):
    router = make_router(family, random_state=3)
    assert router.get_params()["random_state"] == 3
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(router))
    for call in (router.route, router.predict_utility):
        with pytest.raises(NotFittedError, match=family):
            call(task.X_test)
    with pytest.raises(NotFittedError):
        router.save("/nonexistent/never-written")


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_returns_self_and_shapes(family, task, fitted_dars):
    router = make_router(family, random_state=0)
    small = Targets(q=task.targets.q[:40], c=task.targets.c[:40], sigma=task.targets.sigma[:40])
    assert router.fit(task.X_train[:40], small) is router

    fitted = fitted_dars[family]
    n, m = task.X_test.shape[0], task.targets.n_models
    assert fitted.n_models_ == m
    assert fitted.n_features_in_ == task.X_train.shape[1]
    assert fitted.models_ == task.targets.models
    assert fitted.has_sigma_
    routes = fitted.route(task.X_test)
    assert routes.shape == (n,) and routes.dtype == np.int64
    assert routes.min() >= 0 and routes.max() < m
    u = fitted.predict_utility(task.X_test)
    assert u.shape == (n, m) and np.isfinite(u).all()
    np.testing.assert_array_equal(routes, np.argmax(u, axis=1))


@pytest.mark.parametrize("family", FAMILIES)
def test_utility_is_consistent_with_stats(family, task, fitted_dars, fitted_single):
    for fitted in (fitted_dars[family], fitted_single[family]):
        if not fitted.provides_stats:
            with pytest.raises(NotImplementedError, match="does not predict"):
                fitted.predict_stats(task.X_test)
            continue
        stats = fitted.predict_stats(task.X_test)
        shape = (task.X_test.shape[0], task.targets.n_models)
        assert stats.q.shape == shape and stats.c.shape == shape
        for lam, beta in ((0.05, 0.2), (0.3, 0.2), (0.0, 0.2)):
            expected = stats.q - lam * stats.c
            if stats.sigma is not None:
                assert stats.sigma.shape == shape and (stats.sigma >= 0).all()
                expected = expected - beta * stats.sigma
            np.testing.assert_allclose(fitted.predict_utility(task.X_test, lam, beta), expected)
        if stats.risk_beta is None and fitted.has_sigma_:
            # Families that model sigma separately can be asked for any beta.
            fitted.predict_utility(task.X_test, 0.05, 0.5)


@pytest.mark.parametrize("family", FAMILIES)
def test_single_shot_targets_have_no_sigma_term(family, task, fitted_single):
    fitted = fitted_single[family]
    assert not fitted.has_sigma_
    # Without a spread, beta cannot matter.
    np.testing.assert_array_equal(
        fitted.predict_utility(task.X_test, 0.05, 0.0),
        fitted.predict_utility(task.X_test, 0.05, 0.9),
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_routes(family, task, fitted_dars):
    again = make_router(family, random_state=0).fit(task.X_train, task.targets)
    np.testing.assert_array_equal(again.route(task.X_test), fitted_dars[family].route(task.X_test))
    np.testing.assert_array_equal(
        again.predict_utility(task.X_test), fitted_dars[family].predict_utility(task.X_test)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(family, task, fitted_dars, fitted_single, tmp_path):
    for kind, fitted in (("dars", fitted_dars[family]), ("single", fitted_single[family])):
        path = fitted.save(tmp_path / kind)
        assert (path / "router.json").is_file()
        state = "state.pt" if fitted.state_format == "pt" else "state.npz"
        assert (path / state).is_file()
        loaded = load_router(path)
        assert type(loaded) is type(fitted)
        assert loaded.get_params() == fitted.get_params()
        assert loaded.models_ == fitted.models_ and loaded.has_sigma_ == fitted.has_sigma_
        np.testing.assert_array_equal(loaded.route(task.X_test), fitted.route(task.X_test))
        np.testing.assert_array_equal(
            loaded.predict_utility(task.X_test, 0.1, 0.2),
            fitted.predict_utility(task.X_test, 0.1, 0.2),
        )
        # Loading through the family class works too; through another family it does not.
        assert isinstance(get_router_class(family).load(path), Router)


def test_load_through_wrong_family_is_rejected(task, fitted_dars, tmp_path):
    path = fitted_dars["knn"].save(tmp_path / "knn")
    with pytest.raises(TypeError, match="not a AvengersProRouter"):
        get_router_class("avengers_pro").load(path)


@pytest.mark.parametrize("family", FAMILIES)
def test_clone_and_set_params(family, fitted_dars):
    fitted = fitted_dars[family]
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params()
    assert not hasattr(fresh, "n_models_")
    fresh.set_params(random_state=7)
    assert fresh.random_state == 7 and fitted.random_state == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_input_validation(family, task, fitted_dars):
    router = make_router(family, random_state=0)
    t = task.targets
    with pytest.raises(ValueError, match="rows must be the same queries"):
        router.fit(task.X_train[:-1], t)
    bad_X = task.X_train.copy()
    bad_X[5, 2] = np.nan
    with pytest.raises(ValueError, match="row 5"):
        router.fit(bad_X, t)
    with pytest.raises(ValueError, match="2-D"):
        router.fit(task.X_train[0], t)
    with pytest.raises(TypeError, match="Targets"):
        router.fit(task.X_train, {"q": t.q})
    with pytest.raises(ValueError, match="random_state"):
        make_router(family, random_state=-1).fit(task.X_train, t)
    with pytest.raises(ValueError, match="fitted on 24"):
        fitted_dars[family].route(task.X_test[:, :10])
    with pytest.raises(ValueError, match="lam"):
        fitted_dars[family].route(task.X_test, lam=-1.0)


def test_targets_out_of_range_are_rejected():
    with pytest.raises(
        ValueError, match=r"targets.q must lie in \[0.0, 1.0\].*index \[1, 0\] holds 1.5"
    ):
        Targets(q=[[0.1, 0.2], [1.5, 0.3]], c=[[0, 0], [0, 0]])


@pytest.mark.parametrize(
    ("family", "param"),
    [
        ("knn", {"n_neighbors": 0}),
        ("avengers_pro", {"top_k": 0}),
        ("mlp", {"hidden_layer_sizes": (0,)}),
        ("embedllm", {"epochs": 0}),
        ("graph_router", {"embed_dim": 0}),
        ("mirt", {"lr": 0.0}),
        ("rm_softmax", {"lam_grid": ()}),
    ],
)
def test_bad_hyperparameters_name_the_field(family, param, task):
    (name,) = param
    with pytest.raises(ValueError, match=name):
        make_router(family, **param).fit(task.X_train, task.targets)


def test_folded_risk_beta_is_enforced(task, fitted_dars):
    # embedllm folds beta into its quality target and rm_softmax into its regrets.
    for family in ("embedllm", "rm_softmax"):
        with pytest.raises(ValueError, match="refit with beta=0.5"):
            fitted_dars[family].predict_utility(task.X_test, 0.05, 0.5)
