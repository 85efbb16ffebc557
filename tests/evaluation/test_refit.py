"""Shared pieces of the refit experiments (dars.evaluation.refit): scoring route sets by hand,
the sweep families and their prototypes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dars.config import Evaluation
from dars.evaluation.metrics import bootstrap_ci
from dars.evaluation.refit import score_route_sets, select_schema, sweep_families, sweep_prototypes
from tests.evaluation.hand_example import experiment
from tests.evaluation.sweep_example import ALL_A, ALL_B, MODELS, TEST_IDS, hand_view_util, u_of


def test_score_route_sets_hand_computed():
    vu = hand_view_util()
    routes = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0]])
    keys = pl.DataFrame({"policy": ["all_A", "all_B", "mixed"]})
    out = score_route_sets(routes, TEST_IDS, MODELS, vu, dataset="d", keys=keys, n_boot=20, seed=3)

    assert out.columns == [
        "policy",
        "dataset",
        "view",
        "n_queries",
        "U",
        "U_low",
        "U_high",
        "Q",
        "C",
    ]
    # One row per (route set, view), route sets in input order.
    assert out["policy"].to_list() == ["all_A"] * 2 + ["all_B"] * 2 + ["mixed"] * 2
    assert out["view"].to_list() == ["test_decode", "test_rewrite"] * 3
    assert out["n_queries"].to_list() == [3] * 6
    for view in ("test_rewrite", "test_decode"):
        assert u_of(out, policy="all_A", view=view) == pytest.approx(ALL_A[view])
        assert u_of(out, policy="all_B", view=view) == pytest.approx(ALL_B[view])
    # mixed: t0 -> B, t1 -> A, t2 -> A
    mixed = out.filter(pl.col("policy") == "mixed", pl.col("view") == "test_rewrite").row(
        0, named=True
    )
    assert mixed["U"] == pytest.approx((0.95 + 0 + 1) / 3)
    assert mixed["Q"] == pytest.approx(2 / 3) and mixed["C"] == pytest.approx(1 / 3)
    # The CI is bootstrap_ci of the per-query utilities (sorted by query id) with the seed.
    lo, hi = bootstrap_ci([0.95, 0.0, 1.0], n_boot=20, seed=3)
    assert (mixed["U_low"], mixed["U_high"]) == (lo, hi)
    assert (out["U_low"] <= out["U"] + 1e-12).all() and (out["U"] <= out["U_high"] + 1e-12).all()


def test_score_route_sets_errors():
    vu = hand_view_util()
    with pytest.raises(ValueError, match="non-empty"):
        score_route_sets(np.array([0, 1, 0]), TEST_IDS, MODELS, vu, dataset="d")
    with pytest.raises(ValueError, match="keys has 1 rows for 2 route sets"):
        score_route_sets(
            np.zeros((2, 3), int), TEST_IDS, MODELS, vu, dataset="d", keys=pl.DataFrame({"a": [1]})
        )
    # A test query the views score but the routes skip.
    with pytest.raises(ValueError, match="do not route test query 't2'"):
        score_route_sets(np.zeros((1, 2), int), TEST_IDS[:2], MODELS, vu, dataset="d")
    # A routed cell with no test observation.
    holed = vu.filter(~((pl.col("query_id") == "t1") & (pl.col("model") == "B")))
    with pytest.raises(ValueError, match="no test observation for routed cell.*'t1'.*'B'"):
        score_route_sets(np.ones((1, 3), int), TEST_IDS, MODELS, holed, dataset="d")


def test_sweep_families_default_to_the_routers_and_reject_unknown_names():
    exp = experiment().model_copy(update={"families": ["knn", "avengers_pro", "mirt"]})
    assert sweep_families(exp) == ["knn", "avengers_pro", "mirt"]
    only = exp.model_copy(update={"evaluation": Evaluation(sweep_families=["mirt"])})
    assert sweep_families(only) == ["mirt"]
    with pytest.raises(ValueError, match="unknown router family 'nope'"):  # at load
        Evaluation(sweep_families=["nope"])
    unchecked = exp.evaluation.model_copy(update={"sweep_families": ["nope"]})
    bad = exp.model_copy(update={"evaluation": unchecked})  # built in code, unvalidated
    with pytest.raises(ValueError, match=r"unknown router famil\(ies\) \['nope'\]; valid: .*knn"):
        sweep_families(bad)


def test_prototypes_are_built_as_the_train_stage_builds_them():
    exp = experiment().model_copy(update={"families": ["knn", "embedllm"], "seed": 7, "beta": 0.3})
    protos = sweep_prototypes(exp)
    assert list(protos) == ["knn", "embedllm"]
    assert all(p.get_params()["random_state"] == 7 for p in protos.values())
    assert protos["embedllm"].get_params()["beta"] == 0.3  # folds β into training
    assert not hasattr(protos["knn"], "models_")  # unfitted


def test_select_schema_stacks_and_casts():
    schema = {"k": pl.Int32, "U": pl.Float64}
    parts = [pl.DataFrame({"U": [0.5], "k": [1], "x": ["dropped"]})]
    assert select_schema(parts, schema).schema == pl.Schema(schema)
    assert select_schema([], schema).height == 0
