"""The hand example of the sweep tests (refit, sample efficiency, β).

3 test queries × 2 models (A costs nothing, B costs the full range), with training targets that
are the same for every training query, so knn and avengers_pro (averages of neighbour / cluster
targets) predict exactly those targets and the routes follow by hand:

test view utilities (lam = 0.05, c_A = 0, c_B = 1)
                 q_A      q_B       u_A          u_B
test_rewrite   1, 0, 1  1, 1, 0   1, 0, 1    .95, .95, -.05
test_decode    0, 1, 1  1, 1, 1   0, 1, 1    .95, .95, .95

All-A routing: U_rew = 2/3, U_dec = 2/3; all-B: U_rew = 1.85/3, U_dec = 0.95.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dars.evaluation.metrics import VIEW_UTIL_COLUMNS
from dars.evaluation.refit import SweepData
from dars.routers import make_router

LAM = 0.05
MODELS = ("A", "B")
TEST_IDS = ["t0", "t1", "t2"]
Q_TEST = {
    "test_rewrite": {"A": [1.0, 0.0, 1.0], "B": [1.0, 1.0, 0.0]},
    "test_decode": {"A": [0.0, 1.0, 1.0], "B": [1.0, 1.0, 1.0]},
}
C_TEST = {"A": 0.0, "B": 1.0}
ALL_A = {"test_rewrite": 2 / 3, "test_decode": 2 / 3}
ALL_B = {"test_rewrite": 1.85 / 3, "test_decode": 0.95}


def hand_view_util() -> pl.DataFrame:
    rows = [
        {
            "dataset": "d",
            "view": view,
            "query_id": qid,
            "model": model,
            "n_obs": 2,
            "q": qs[i],
            "c": C_TEST[model],
            "u": qs[i] - LAM * C_TEST[model],
        }
        for view, per_model in Q_TEST.items()
        for model, qs in per_model.items()
        for i, qid in enumerate(TEST_IDS)
    ]
    return pl.DataFrame(rows).select(VIEW_UTIL_COLUMNS).sort("dataset", "view", "query_id", "model")


def hand_data(n_train: int = 6) -> SweepData:
    rng = np.random.default_rng(0)
    return SweepData(
        dataset="d",
        models=MODELS,
        train_ids=[f"q{i}" for i in range(n_train)],
        X_train=rng.normal(size=(n_train, 4)),
        test_ids=TEST_IDS,
        X_test=rng.normal(size=(len(TEST_IDS), 4)),
        view_util=hand_view_util(),
    )


def constant_targets(train_ids, per_model: dict[str, tuple[float, float, float]]) -> pl.DataFrame:
    """Supervision rows giving every query the same (q_mean, c_mean, q_std) per model."""
    return pl.DataFrame(
        [
            {
                "dataset": "d",
                "query_id": q,
                "model": m,
                "q_mean": v[0],
                "c_mean": v[1],
                "q_std": v[2],
            }
            for q in train_ids
            for m, v in per_model.items()
        ]
    )


def cheap(family: str):
    router = make_router(family, random_state=0)
    if family == "avengers_pro":
        router.set_params(n_clusters=2, n_init=1)
    if family in ("mirt", "embedllm", "rm_softmax"):
        router.set_params(epochs=20)
    if family == "mlp":
        router.set_params(hidden_layer_sizes=(8,), max_iter=30)
    return router


def u_of(frame: pl.DataFrame, **key) -> float:
    rows = frame.filter(*[pl.col(k) == v for k, v in key.items()])
    assert rows.height == 1, (key, rows)
    return rows["U"][0]
