"""The β experiment (Fig 4c), hand-checked on tests/evaluation/sweep_example.py; the experiment
on a simulated store is in test_sample_efficiency.py (the two share its store)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone

from dars.evaluation.experiments.beta import BETA_COLUMNS, SPEC, beta_sweep
from dars.evaluation.refit import score_route_sets
from dars.routers import targets_from_frame
from dars.routers.training import training_targets
from tests.evaluation.sweep_example import (
    ALL_A,
    ALL_B,
    LAM,
    MODELS,
    TEST_IDS,
    cheap,
    constant_targets,
    hand_data,
    u_of,
)

# A: q=0.8, σ=0.4; B: q=0.7, σ=0; both c=0 in training. u_A = 0.8 - 0.4β > u_B = 0.7 iff β < 0.25.
RISKY_A = {"A": (0.8, 0.0, 0.4), "B": (0.7, 0.0, 0.0)}


@pytest.mark.parametrize("family", ["knn", "avengers_pro"])
def test_beta_sweep_switches_to_the_safe_model_past_the_crossing(family):
    data = hand_data()
    dars = constant_targets(data.train_ids, RISKY_A)
    betas = [0.0, 0.1, 0.5, 1.0]
    out = beta_sweep(dars, data, {family: cheap(family)}, betas=betas, lam=LAM, n_boot=50, seed=0)
    assert out.schema == pl.Schema(BETA_COLUMNS)
    assert out.height == len(betas) * 2
    assert out["beta"].to_list() == [b for b in betas for _ in range(2)]
    for view in ("test_rewrite", "test_decode"):
        for b in betas:
            want = ALL_A[view] if b < 0.25 else ALL_B[view]
            assert u_of(out, beta=b, view=view) == pytest.approx(want)


def test_beta_zero_equals_the_router_trained_without_sigma():
    """knn's q, c do not depend on σ: at β = 0 it routes like knn trained on σ-free targets."""
    data = hand_data(n_train=12)
    rng = np.random.default_rng(1)
    dars = pl.DataFrame(
        [
            {
                "query_id": q,
                "model": m,
                "q_mean": rng.uniform(),
                "c_mean": rng.uniform(),
                "q_std": rng.uniform(0, 0.5),
            }
            for q in data.train_ids
            for m in MODELS
        ]
    )
    out = beta_sweep(dars, data, {"knn": cheap("knn")}, betas=[0.0, 5.0], lam=LAM, n_boot=50)
    no_sigma = targets_from_frame(dars, data.train_ids, MODELS, sigma_col=None)
    plain = cheap("knn").fit(data.X_train, no_sigma).route(data.X_test, LAM, 0.0)
    ref = score_route_sets(plain[None], TEST_IDS, MODELS, data.view_util, dataset="d", n_boot=50)
    at0 = out.filter(pl.col("beta") == 0.0).sort("view")
    assert at0.select("view", "U", "U_low", "U_high", "Q", "C").equals(
        ref.select("view", "U", "U_low", "U_high", "Q", "C").sort("view")
    )


def test_beta_folding_family_is_refitted_per_beta():
    data = hand_data(n_train=8)
    rng = np.random.default_rng(2)
    dars = pl.DataFrame(
        [
            {"query_id": q, "model": m, "q_mean": rng.uniform(), "c_mean": 0.5, "q_std": 0.3}
            for q in data.train_ids
            for m in MODELS
        ]
    )
    proto = cheap("embedllm")
    betas = [0.0, 0.7]
    out = beta_sweep(dars, data, {"embedllm": proto}, betas=betas, lam=LAM, n_boot=50)
    _, targets = training_targets(dars, "dars", data.train_ids, MODELS)
    for b in betas:
        # A router fitted at β only answers for that β: the sweep must have refitted it.
        ref = clone(proto).set_params(beta=b).fit(data.X_train, targets)
        routes = ref.route(data.X_test, LAM, b)[None]
        want = score_route_sets(routes, TEST_IDS, MODELS, data.view_util, dataset="d", n_boot=50)
        got = out.filter(pl.col("beta") == b).sort("view")
        np.testing.assert_allclose(got["U"].to_numpy(), want.sort("view")["U"].to_numpy())
    assert proto.get_params()["beta"] == 0.2  # the prototype itself is untouched


def test_view_pivots_utility_by_beta():
    frame = pl.DataFrame(
        {
            "dataset": ["d"] * 2,
            "view": ["test_rewrite"] * 2,
            "family": ["knn"] * 2,
            "beta": [0.0, 0.5],
            "U": [0.1, 0.2],
            "U_low": [0.0, 0.1],
            "U_high": [0.2, 0.3],
            "Q": [0.5, 0.5],
            "C": [0.1, 0.1],
        },
        schema=BETA_COLUMNS,
    )
    [view] = SPEC.view({"beta": frame})
    assert view.frame.columns == ["dataset", "view", "family", "0.0", "0.5"]
    assert view.frame.row(0) == ("d", "test_rewrite", "knn", 0.1, 0.2)
