"""fit_many (batched training) against fitting one draw at a time."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from dars.routers import (
    TORCH_FAMILIES,
    BatchedTargets,
    available_routers,
    make_router,
    predict_stats_many,
    route_many,
)

FAMILIES = available_routers()
EXACT = {"knn", "avengers_pro"}


@pytest.fixture(scope="module")
def sequential(task, single_shot):
    """Per family: routers fitted one draw at a time (the slow obvious reference)."""
    return {
        f: [
            make_router(f, random_state=0).fit(task.X_train, single_shot.draw(s))
            for s in range(single_shot.n_draws)
        ]
        for f in FAMILIES
    }


@pytest.fixture(scope="module")
def batched(task, single_shot):
    return {f: make_router(f, random_state=0).fit_many(task.X_train, single_shot) for f in FAMILIES}


def _scores(routers, X):
    return np.stack([r.predict_utility(X) for r in routers])


@pytest.mark.parametrize("family", sorted(EXACT | TORCH_FAMILIES))
def test_batched_equals_sequential(family, task, sequential, batched):
    seq, bat = sequential[family], batched[family]
    assert len(bat) == len(seq)
    assert all(type(r) is type(seq[0]) and r.get_params() == seq[0].get_params() for r in bat)
    if family in EXACT:
        np.testing.assert_array_equal(_scores(bat, task.X_test), _scores(seq, task.X_test))
    else:
        # Torch: each draw's slice follows its own fit's trajectory (float32, one thread); on
        # this machine the results are bitwise equal, the tolerance allows for other BLAS builds.
        np.testing.assert_allclose(
            _scores(bat, task.X_test), _scores(seq, task.X_test), rtol=0, atol=1e-5
        )
    np.testing.assert_array_equal(route_many(bat, task.X_test), route_many(seq, task.X_test))


def test_mlp_batched_is_a_documented_warm_start(task, sequential, batched, single_shot):
    seq, bat = sequential["mlp"], batched["mlp"]
    # Draw 0 is fitted exactly as fit() would.
    np.testing.assert_array_equal(
        bat[0].predict_utility(task.X_test), seq[0].predict_utility(task.X_test)
    )
    # Other draws are warm-started: not equal, but they learned their own draw and route about
    # as well as independent fits do.
    assert not np.array_equal(
        bat[1].predict_utility(task.X_test), seq[1].predict_utility(task.X_test)
    )
    span = task.oracle_value() - task.random_value()
    for s in range(1, single_shot.n_draws):
        assert (
            abs(task.value(bat[s].route(task.X_test)) - task.value(seq[s].route(task.X_test)))
            < 0.15 * span
        )
    # exact=True gives the sequential fits back.
    exact = make_router("mlp", random_state=0).fit_many(task.X_train, single_shot, exact=True)
    np.testing.assert_array_equal(_scores(exact, task.X_test), _scores(seq, task.X_test))


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "rm_softmax"])
def test_predict_stats_many_matches_per_router(family, task, batched):
    routers = batched[family]
    many = predict_stats_many(routers, task.X_test)
    for s, r in enumerate(routers):
        one = r.predict_stats(task.X_test)
        np.testing.assert_allclose(many.q[s], one.q, rtol=0, atol=1e-12)
        np.testing.assert_allclose(many.c[s], one.c, rtol=0, atol=1e-12)
        assert (many.sigma is None) == (one.sigma is None)
    np.testing.assert_array_equal(
        route_many(routers, task.X_test, 0.2, 0.2),
        np.stack([r.route(task.X_test, 0.2, 0.2) for r in routers]),
    )


def test_route_many_rejects_mixed_families(batched, task):
    with pytest.raises(ValueError, match="one family"):
        route_many([batched["knn"][0], batched["mlp"][0]], task.X_test)


@pytest.mark.parametrize("family", ["mirt", "graph_router"])
def test_chunking_and_sigma_targets_do_not_change_torch_results(family, task):
    # Two DARS-like draws with sigma (e.g. two ablations) trained together vs in chunks of one.
    t = task.targets
    bt = BatchedTargets.stack([t, type(t)(q=t.q[::-1], c=t.c, sigma=t.sigma, models=t.models)])
    router = make_router(family, random_state=0, epochs=60)
    whole = router.fit_many(task.X_train, bt)
    chunked = router.fit_many(task.X_train, bt, chunk_size=1)
    assert all(r.has_sigma_ for r in whole)
    np.testing.assert_allclose(
        predict_stats_many(whole, task.X_test).sigma,
        predict_stats_many(chunked, task.X_test).sigma,
        rtol=0,
        atol=1e-5,
    )
    single = clone(router).fit(task.X_train, bt.draw(1))
    np.testing.assert_allclose(
        whole[1].predict_utility(task.X_test), single.predict_utility(task.X_test), atol=1e-5
    )


def test_fit_many_validates(task, single_shot):
    router = make_router("knn")
    with pytest.raises(TypeError, match="BatchedTargets"):
        router.fit_many(task.X_train, single_shot.draw(0))
    with pytest.raises(ValueError, match="chunk_size"):
        router.fit_many(task.X_train, single_shot, chunk_size=0)
    with pytest.raises(ValueError, match="rows must be the same queries"):
        router.fit_many(task.X_train[:10], single_shot)
    assert not hasattr(router, "n_models_")  # the template stays unfitted


def test_exact_batches_only_families_whose_batching_is_exact(task, monkeypatch):
    from dars.routers.registry import get_router_class

    approximate = [f for f in FAMILIES if not get_router_class(f).batched_fit_is_exact]
    assert approximate == ["mlp"]
    single_shot = task.single_shot(4)
    for family, batches in (("knn", True), ("mlp", False)):
        cls = get_router_class(family)
        calls = []
        original = cls._fit_batched

        def spy(self, *a, _orig=original, _calls=calls, **k):
            _calls.append(1)
            return _orig(self, *a, **k)

        monkeypatch.setattr(cls, "_fit_batched", spy)
        make_router(family, random_state=0).fit_many(task.X_train, single_shot, exact=True)
        assert bool(calls) is batches, family
