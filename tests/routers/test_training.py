"""The pure training helpers (dars.routers.training): supervisions, routers built from declared
tags, training targets from supervision frames, routes as frames, and the λ-sweep routes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dars.routers import (
    BatchedTargets,
    RouterTags,
    Targets,
    available_routers,
    get_router_class,
    make_router,
    register_router,
    route_many,
)
from dars.routers.training import (
    DEFAULT_SUPERVISIONS,
    check_families,
    check_supervisions,
    fit_and_route,
    folds_beta,
    lam_routes_table,
    new_router,
    route_lam_grid,
    routes_table,
    training_targets,
)
from tests.routers.toy_family import BestFixedRouter

MODELS = ["a", "b"]

# One dataset's ``dars`` supervision: 3 queries × 2 models (q_mean, c_mean, q_std).
DARS = pl.DataFrame(
    {
        "dataset": ["d"] * 6,
        "query_id": ["q3", "q1", "q2", "q1", "q3", "q2"],
        "model": ["a", "a", "a", "b", "b", "b"],
        "q_mean": [0.3, 0.1, 0.2, 0.6, 0.9, 0.8],
        "c_mean": [0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        "q_std": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
    }
)
# Its single-shot draws: 2 draws of q1 and q2.
DRAWS = pl.DataFrame(
    {
        "dataset": ["d"] * 8,
        "draw": [1, 1, 1, 1, 0, 0, 0, 0],
        "query_id": ["q1", "q1", "q2", "q2"] * 2,
        "model": ["a", "b"] * 4,
        "q": [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0],
        "c": [0.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.0, 0.5],
    }
)


def test_default_supervisions_are_single_shot_dars_and_the_five_ablations():
    assert DEFAULT_SUPERVISIONS == (
        "single_shot",
        "dars",
        "input_only",
        "output_only",
        "without_risk",
        "rewrite_risk",
        "decoding_risk",
    )


def test_unknown_families_and_supervisions_list_the_valid_ones():
    assert check_families(["knn", "mirt"]) == ["knn", "mirt"]
    with pytest.raises(ValueError, match=r"unknown router famil\(ies\) \['nope'\]; valid: .*knn"):
        check_families(["knn", "nope"])
    with pytest.raises(ValueError, match="no router family given"):
        check_families([])
    with pytest.raises(ValueError, match="unknown supervision.*valid: single_shot, dars"):
        check_supervisions(["bogus"])


def test_new_router_sets_beta_and_lam_grid_from_the_declared_tags():
    for family in available_routers():
        tags = get_router_class(family).tags
        router = new_router(family, random_state=7, beta=0.5, lam_grid=(0.2, 0.0, 0.2))
        params = router.get_params()
        assert params["random_state"] == 7
        assert folds_beta(router) is tags.folds_beta
        default = make_router(family).get_params()
        assert params.get("beta") == (0.5 if tags.folds_beta else default.get("beta"))
        assert params.get("lam_grid") == (
            (0.0, 0.2) if tags.lam_conditioned else default.get("lam_grid")
        )
    # Without a grid the family keeps its own.
    default_grid = make_router("rm_softmax").lam_grid
    assert new_router("rm_softmax", random_state=0, beta=0.2).lam_grid == default_grid
    assert [f for f in available_routers() if get_router_class(f).tags.folds_beta] == [
        "embedllm",
        "rm_softmax",
    ]


def test_folds_beta_reads_the_tag_not_the_hyperparameters(scratch_registry):
    # A ``beta`` hyperparameter that means something else does not make a family fold β.
    @register_router("adam_like")
    class AdamLike(BestFixedRouter):
        def __init__(self, *, beta: float = 0.9, random_state: int | None = None) -> None:
            self.beta = beta
            self.random_state = random_state

    assert not folds_beta(AdamLike())
    assert new_router("adam_like", random_state=0, beta=0.2).beta == 0.9


def test_training_targets_keeps_split_order_and_drops_missing_queries():
    train_ids = ["absent-not-supervised", "q3", "q2", "q1"]
    part = DARS.filter(pl.col("query_id") != "q2")
    rows, targets = training_targets(part, "dars", train_ids, MODELS)
    assert rows == [1, 3]
    assert isinstance(targets, Targets) and targets.models == ("a", "b")
    np.testing.assert_array_equal(targets.q, [[0.3, 0.9], [0.1, 0.6]])
    np.testing.assert_array_equal(targets.sigma, [[0.5, 0.1], [0.4, 0.2]])
    _, no_risk = training_targets(part, "without_risk", train_ids, MODELS)
    assert no_risk.sigma is None
    np.testing.assert_array_equal(no_risk.q, targets.q)
    with pytest.raises(ValueError, match="not in the train split"):
        training_targets(DARS, "dars", ["q1", "q2"], MODELS)
    with pytest.raises(ValueError, match="covers no train query"):
        training_targets(DARS.clear(), "dars", ["q1"], MODELS)


def test_single_shot_training_targets_are_the_sorted_draws():
    rows, targets = training_targets(DRAWS, "single_shot", ["q2", "q9", "q1"], MODELS)
    assert rows == [0, 2]
    assert isinstance(targets, BatchedTargets) and targets.n_draws == 2
    assert targets.sigma is None
    np.testing.assert_array_equal(targets.q[0], [[1.0, 1.0], [0.0, 0.0]])  # draw 0: q2, q1
    np.testing.assert_array_equal(targets.c[1], [[0.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="unknown supervision"):
        training_targets(DRAWS, "bogus", ["q1"], MODELS)


def test_routes_table_rows():
    t = routes_table(np.array([[1, 0], [0, 0]]), ["q1", "q2"], ["a", "b"])
    assert t.schema == pl.Schema(
        {"draw": pl.Int32, "query_id": pl.String, "model": pl.String, "model_index": pl.Int32}
    )
    assert t.to_dicts() == [
        {"draw": 0, "query_id": "q1", "model": "b", "model_index": 1},
        {"draw": 0, "query_id": "q2", "model": "a", "model_index": 0},
        {"draw": 1, "query_id": "q1", "model": "a", "model_index": 0},
        {"draw": 1, "query_id": "q2", "model": "a", "model_index": 0},
    ]
    with pytest.raises(ValueError, match="route indices"):
        routes_table(np.array([[2]]), ["q1"], ["a", "b"])


def test_route_lam_grid_and_lam_routes_table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3))
    q = rng.uniform(size=(12, 2))
    c = np.tile([0.0, 1.0], (12, 1))
    router = make_router("knn", random_state=0).fit(X, Targets(q=q, c=c, models=["a", "b"]))
    lams = [0.0, 0.05, 5.0]
    routes = route_lam_grid([router], X, lams, beta=0.2)
    assert routes.shape == (3, 1, 12)
    for i, lam in enumerate(lams):
        np.testing.assert_array_equal(routes[i, 0], router.route(X, lam, 0.2))
    # At λ = 5 model b (cost 1) can never win: its predicted q exceeds a's by at most 1.
    assert (routes[2] == 0).all()
    with pytest.raises(ValueError, match="lams is empty"):
        route_lam_grid([router], X, [], beta=0.2)

    t = lam_routes_table(np.array([[[1, 0]], [[0, 0]]]), [0.0, 0.5], ["q1", "q2"], ["a", "b"])
    assert t.schema == pl.Schema(
        {
            "lam": pl.Float64,
            "draw": pl.Int32,
            "query_id": pl.String,
            "model": pl.String,
            "model_index": pl.Int32,
        }
    )
    assert t.to_dicts() == [
        {"lam": 0.0, "draw": 0, "query_id": "q1", "model": "b", "model_index": 1},
        {"lam": 0.0, "draw": 0, "query_id": "q2", "model": "a", "model_index": 0},
        {"lam": 0.5, "draw": 0, "query_id": "q1", "model": "a", "model_index": 0},
        {"lam": 0.5, "draw": 0, "query_id": "q2", "model": "a", "model_index": 0},
    ]
    with pytest.raises(ValueError, match="routes must be"):
        lam_routes_table(np.zeros((1, 1, 2), dtype=int), [0.0, 0.5], ["q1", "q2"], ["a", "b"])


def test_route_lam_grid_asks_a_lam_conditioned_family_per_lam(task):
    # Declared λ-conditioned: its statistics are not λ-free, so the sweep must not reuse them
    # (this toy would route by its stats at λ = 0 everywhere if it did).
    class LamInput(BestFixedRouter):
        tags = RouterTags(lam_conditioned=True)

        def _predict_stats(self, X):
            raise AssertionError("a λ-conditioned family's stats were reused across λ")

        def predict_utility(self, X, lam=0.05, beta=0.2):
            self._check_fitted()
            n = len(X)
            # Model 0 below λ = 0.1, model 1 above: depends on λ beyond q − λc.
            return np.tile([0.1 - lam, lam - 0.1], (n, 1))

    assert not LamInput.tags.routes_by_stats
    router = LamInput(random_state=0).fit(task.X_train, task.targets)
    routes = route_lam_grid([router], task.X_test[:3], [0.0, 0.5], beta=0.2)
    assert routes[:, 0, :].tolist() == [[0, 0, 0], [1, 1, 1]]


def test_fit_and_route_fits_draws_and_routes_them(task):
    draws = task.single_shot(3, seed=1)
    lams = [0.0, 0.5]
    got = fit_and_route(
        make_router("knn", random_state=0),
        task.X_train,
        draws,
        task.X_test,
        lam=0.05,
        beta=0.2,
        lam_grid=lams,
    )
    assert len(got.routers) == 3 and got.fit_s >= 0 and got.lam_route_s >= 0
    np.testing.assert_array_equal(got.routes, route_many(got.routers, task.X_test, 0.05, 0.2))
    grid = route_lam_grid(got.routers, task.X_test, lams, 0.2)
    np.testing.assert_array_equal(got.lam_routes, grid)
    one = fit_and_route(
        make_router("knn", random_state=0),
        task.X_train,
        task.targets,
        task.X_test,
        lam=0.05,
        beta=0.2,
    )
    assert len(one.routers) == 1 and one.lam_routes is None
    assert one.routes.shape == (1, task.X_test.shape[0])
