"""The Router base: tags, Stats, fit_many (batched training) against fitting one draw at a time,
batched prediction, and loading by family."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dars.routers import (
    Router,
    RouterTags,
    Stats,
    available_routers,
    draw_seed,
    get_router_class,
    make_router,
    predict_stats_many,
    route_many,
)
from tests.routers.toy_family import BestFixedRouter

FAMILIES = available_routers()


def _tags(family: str) -> RouterTags:
    return get_router_class(family).tags


@pytest.fixture(scope="module")
def sequential(task, single_shot):
    """Per family: routers fitted one draw at a time, draw s seeded draw_seed(0, s) (the slow
    obvious reference)."""
    return {
        f: [
            make_router(f, random_state=draw_seed(0, s)).fit(task.X_train, single_shot.draw(s))
            for s in range(single_shot.n_draws)
        ]
        for f in FAMILIES
    }


@pytest.fixture(scope="module")
def batched(task, single_shot):
    return {f: make_router(f, random_state=0).fit_many(task.X_train, single_shot) for f in FAMILIES}


def _scores(routers, X):
    return np.stack([r.predict_utility(X) for r in routers])


def test_tags_are_frozen_and_default_to_a_plain_stats_family():
    tags = RouterTags()
    assert tags == Router.tags
    assert (tags.predicts_stats, tags.batched_fit_exact) == (True, True)
    assert not (tags.folds_beta or tags.lam_conditioned or tags.needs_torch)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tags.needs_torch = True


def test_stats_utility_and_folded_beta():
    s = Stats(q=np.array([[0.5, 0.5]]), c=np.array([[0.0, 1.0]]), sigma=np.array([[0.5, 0.0]]))
    np.testing.assert_allclose(s.utility(0.05, 0.2), [[0.4, 0.45]])
    folded = Stats(q=s.q, c=s.c, risk_beta=0.2)
    np.testing.assert_allclose(folded.utility(0.1, 0.2), [[0.5, 0.4]])
    with pytest.raises(ValueError, match="refit with beta=0.5"):
        folded.utility(0.1, 0.5)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        s.utility(-0.1, 0.2)


@pytest.mark.parametrize("family", [f for f in FAMILIES if _tags(f).batched_fit_exact])
def test_batched_equals_sequential(family, task, sequential, batched):
    seq, bat = sequential[family], batched[family]
    assert len(bat) == len(seq)
    assert all(
        type(r) is type(s) and r.get_params() == s.get_params()
        for r, s in zip(bat, seq, strict=True)
    )
    if not _tags(family).needs_torch:
        np.testing.assert_array_equal(_scores(bat, task.X_test), _scores(seq, task.X_test))
    else:
        # Torch: each draw's slice follows its own fit's trajectory (float32, one thread); on
        # this machine the results are bitwise equal, the tolerance allows for other BLAS builds.
        np.testing.assert_allclose(
            _scores(bat, task.X_test), _scores(seq, task.X_test), rtol=0, atol=1e-5
        )
    np.testing.assert_array_equal(route_many(bat, task.X_test), route_many(seq, task.X_test))


@pytest.mark.parametrize("family", [f for f in FAMILIES if _tags(f).predicts_stats])
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


def test_families_without_stats_refuse_batched_stats_but_route(task, batched):
    no_stats = [f for f in FAMILIES if not _tags(f).predicts_stats]
    assert no_stats == ["rm_softmax"]
    routers = batched["rm_softmax"]
    with pytest.raises(NotImplementedError, match="does not predict"):
        predict_stats_many(routers, task.X_test)
    np.testing.assert_array_equal(
        route_many(routers, task.X_test), np.stack([r.route(task.X_test) for r in routers])
    )


def test_route_many_rejects_mixed_families(batched, task):
    with pytest.raises(ValueError, match="one family"):
        route_many([batched["knn"][0], batched["mlp"][0]], task.X_test)


def test_fit_many_validates(task, single_shot):
    router = make_router("knn")
    with pytest.raises(TypeError, match="BatchedTargets"):
        router.fit_many(task.X_train, single_shot.draw(0))
    with pytest.raises(ValueError, match="chunk_size"):
        router.fit_many(task.X_train, single_shot, chunk_size=0)
    with pytest.raises(ValueError, match="rows must be the same queries"):
        router.fit_many(task.X_train[:10], single_shot)
    with pytest.raises(ValueError, match="seeds must be 'independent' or 'shared'"):
        router.fit_many(task.X_train, single_shot, seeds="same")
    assert not hasattr(router, "n_models_")  # the template stays unfitted


def test_exact_batches_only_families_whose_batching_is_exact(task, monkeypatch):
    # Every built-in family batches exactly (mlp since it is a torch model); a family that
    # declares an approximate batched fit is fitted one draw at a time under exact=True.
    approximate = [f for f in FAMILIES if not _tags(f).batched_fit_exact]
    assert approximate == []
    single_shot = task.single_shot(4)
    inexact = get_router_class("avengers_pro")
    monkeypatch.setattr(inexact, "tags", dataclasses.replace(inexact.tags, batched_fit_exact=False))
    for family, batches in (("knn", True), ("mlp", True), ("avengers_pro", False)):
        cls = get_router_class(family)
        calls = []
        original = cls._fit_batched

        def spy(self, *a, _orig=original, _calls=calls, **k):
            _calls.append(1)
            return _orig(self, *a, **k)

        monkeypatch.setattr(cls, "_fit_batched", spy)
        make_router(family, random_state=0).fit_many(task.X_train, single_shot, exact=True)
        assert bool(calls) is batches, family


def test_a_family_without_batched_fit_loops(task, single_shot):
    # The toy family implements no _fit_batched: fit_many fits clones one draw at a time.
    router = BestFixedRouter(random_state=0)
    routers = router.fit_many(task.X_train, single_shot)
    assert len(routers) == single_shot.n_draws and not hasattr(router, "n_models_")
    for s, r in enumerate(routers):
        np.testing.assert_array_equal(r.mean_q_, single_shot.q[s].mean(axis=0))


def test_load_through_the_wrong_family_or_the_base_is_rejected(fitted_dars, tmp_path):
    path = fitted_dars["knn"].save(tmp_path / "knn")
    assert type(get_router_class("knn").load(path)) is get_router_class("knn")
    with pytest.raises(TypeError, match=r"holds a 'knn' router, not a 'avengers_pro' router"):
        get_router_class("avengers_pro").load(path)
    with pytest.raises(TypeError, match="holds a 'knn' router, not Router; .*load_router"):
        Router.load(path)


def test_an_unregistered_family_cannot_save(task, tmp_path):
    router = BestFixedRouter(random_state=0).fit(task.X_train, task.targets)
    with pytest.raises(TypeError, match="BestFixedRouter is not a registered router family"):
        router.save(tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_draw_seeds_are_independent_streams():
    # Draw 0 keeps the router's own seed (a plain fit is draw 0); the others are distinct,
    # valid random_state values, the same for the same (seed, draw).
    seeds = [draw_seed(7, s) for s in range(100)]
    assert seeds[0] == 7 and len(set(seeds)) == 100
    assert all(0 <= s < 2**32 for s in seeds) and seeds == [draw_seed(7, s) for s in range(100)]
    assert draw_seed(8, 1) != draw_seed(7, 1)


@pytest.mark.parametrize("family", ["mlp", "mirt", "avengers_pro"])
def test_single_shot_draws_are_independent(family, task, single_shot):
    # Issue 16: the paper trains 100 independently sampled single-shot routers. Draw k's router
    # depends on draw k's labels and its own seed only: changing draw 0's labels leaves every
    # other draw unchanged, and identical labels still give different initialisations.
    import dataclasses as dc

    X = task.X_test
    base = make_router(family, random_state=0).fit_many(task.X_train, single_shot)
    flipped = dc.replace(single_shot, q=single_shot.q.copy())
    flipped.q[0] = 1.0 - flipped.q[0]
    other = make_router(family, random_state=0).fit_many(task.X_train, flipped)
    assert not np.array_equal(base[0].predict_utility(X), other[0].predict_utility(X))
    for k in range(1, single_shot.n_draws):
        np.testing.assert_array_equal(base[k].predict_utility(X), other[k].predict_utility(X))
    same = dc.replace(
        single_shot,
        q=np.repeat(single_shot.q[:1], single_shot.n_draws, axis=0),
        c=np.repeat(single_shot.c[:1], single_shot.n_draws, axis=0),
    )
    routers = make_router(family, random_state=0).fit_many(task.X_train, same)
    assert len({r.random_state for r in routers}) == single_shot.n_draws
    utilities = [r.predict_utility(X) for r in routers]
    assert not all(np.array_equal(utilities[0], u) for u in utilities[1:]), family


@pytest.mark.parametrize("family", ["mirt", "avengers_pro"])
def test_shared_seeds_fit_every_draw_as_a_plain_fit(family, task, single_shot):
    # Protocol variants (sample efficiency) share the experiment's seed: draw s equals
    # clone(self).fit(X, targets.draw(s)), as the DARS router it is compared with.
    routers = make_router(family, random_state=3).fit_many(
        task.X_train, single_shot, seeds="shared"
    )
    for s, r in enumerate(routers):
        assert r.random_state == 3
        ref = make_router(family, random_state=3).fit(task.X_train, single_shot.draw(s))
        np.testing.assert_allclose(
            r.predict_utility(task.X_test), ref.predict_utility(task.X_test), rtol=0, atol=1e-5
        )
