"""Label recovery against a known truth, and the synthetic generator that provides one."""

from __future__ import annotations

import polars as pl
import pytest

from dars.supervision import (
    ABLATIONS,
    RECOVERY_COLUMNS,
    aggregate,
    full_dars,
    hard_labels,
    label_recovery,
    recovery_table,
    single_shot,
    synthetic_observations,
    true_utility,
)
from tests.supervision.reference import hand_frame


def hand_truth(**overrides: float) -> pl.DataFrame:
    # u* = p - 0.05 c: q1 A 0.79 > B 0.555 (best A); q2 A 0.3 < B 0.5 (best B)
    values = {("q1", "A"): (0.8, 0.2), ("q1", "B"): (0.6, 0.9), ("q2", "A"): (0.3, 0.0)}
    values[("q2", "B")] = (overrides.get("q2_B", 0.5), 0.0)
    return pl.DataFrame(
        [("d", q, m, p, c) for (q, m), (p, c) in values.items()],
        schema=["dataset", "query_id", "model", "p_true", "c_true"],
        orient="row",
    )


def test_hand_recovery_of_dars_labels():
    labels = hard_labels(full_dars(hand_frame()), ["A", "B"])  # A, A
    out = label_recovery(labels, hand_truth(), ["A", "B"], n_boot=200)
    assert out.columns == list(RECOVERY_COLUMNS)
    row = out.row(0, named=True)
    assert row["recovery"] == 0.5
    assert row["regret"] == pytest.approx((0.0 + 0.2) / 2)
    assert (row["n_queries"], row["n_labels"]) == (2, 2)
    assert row["ci_low"] == 0.0 and row["ci_high"] == 1.0


def test_tied_truth_accepts_any_best_model():
    labels = hard_labels(full_dars(hand_frame()), ["A", "B"])
    out = label_recovery(labels, hand_truth(q2_B=0.3), ["A", "B"], n_boot=10)
    assert out["recovery"].to_list() == [1.0]
    assert out["regret"].to_list() == [0.0]


def test_single_shot_recovery_is_mean_over_draws():
    shots = single_shot(hand_frame(), ["A", "B"], draws=30, seed=1)
    out = label_recovery(shots.labels, hand_truth(), ["A", "B"], n_boot=10).row(0, named=True)
    per_query = {
        q: (part["label"] == best).mean()
        for (q, best) in (("q1", "A"), ("q2", "B"))
        for part in [shots.labels.filter(pl.col("query_id") == q)]
    }
    assert out["recovery"] == pytest.approx((per_query["q1"] + per_query["q2"]) / 2)
    assert out["n_labels"] == 60


def test_true_utility_with_risk():
    truth = hand_truth().with_columns(sigma_true=pl.lit(0.5))
    u = true_utility(truth, lam=0.1, beta_true=0.2)
    assert u.filter(pl.col("query_id") == "q1")["u_true"].to_list() == pytest.approx(
        [0.8 - 0.02 - 0.1, 0.6 - 0.09 - 0.1]
    )
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sigma_true'\]"):
        true_utility(hand_truth(), beta_true=0.2)


def test_recovery_input_errors():
    labels = hard_labels(full_dars(hand_frame()), ["A", "B"])
    with pytest.raises(ValueError, match=r"\['B'\] at dataset='d', query_id='q2'"):
        label_recovery(labels, hand_truth().head(3), ["A", "B"])
    with pytest.raises(ValueError, match="truth has no row for dataset='d', query_id='q2'"):
        label_recovery(labels, hand_truth().filter(pl.col("query_id") == "q1"), ["A", "B"])
    with pytest.raises(ValueError, match="not in the pool"):
        label_recovery(labels, hand_truth(), ["B", "C"])
    nan_truth = hand_truth().with_columns(p_true=pl.lit(float("nan")))
    with pytest.raises(ValueError, match="column 'p_true'.*query_id='q1'"):
        label_recovery(labels, nan_truth, ["A", "B"])
    with pytest.raises(ValueError, match="duplicate"):
        true_utility(pl.concat([hand_truth(), hand_truth().head(1)]))


def test_recovery_table_on_synthetic_data():
    models = ["m0", "m1", "m2", "m3"]
    data = synthetic_observations(n_queries=80, models=models, n_rewrites=4, n_decodes=4, seed=7)
    table = recovery_table(
        data.observations, data.truth, models, draws=50, protocols=[(1, 1), (4, 4)], n_boot=200
    )
    assert table.columns == ["dataset", "supervision", "k", "m", *RECOVERY_COLUMNS[1:]]
    assert table["supervision"].to_list() == [
        "single_shot",
        *ABLATIONS,
        "dars_k1_m1",
        "dars_k4_m4",
    ]
    rec = dict(zip(table["supervision"], table["recovery"], strict=True))
    # the full grid is full DARS; averaging 16 observations beats one sampled outcome
    assert rec["dars_k4_m4"] == rec["full_dars"]
    assert rec["full_dars"] > rec["single_shot"] + 0.1
    assert rec["dars_k4_m4"] > rec["dars_k1_m1"]
    single = table.row(0, named=True)
    assert single["n_labels"] == 80 * 50 and single["k"] is None
    assert single["ci_low"] < single["recovery"] < single["ci_high"]


def test_synthetic_generator_shape_and_truth():
    data = synthetic_observations(
        n_queries=3,
        models=["x", "y"],
        n_rewrites=400,
        n_decodes=10,
        include_original=True,
        datasets=["s1", "s2"],
        seed=3,
    )
    obs = data.observations
    assert obs.height == 2 * 3 * 2 * 401 * 10
    assert obs["rewrite_id"].min() == -1 and obs["rewrite_id"].max() == 399
    assert obs["status"].unique().to_list() == ["ok"]
    agg = aggregate(obs).join(data.truth, on=["dataset", "query_id", "model"])
    assert agg.height == 12
    # 4010 observations per cell: empirical means close to the expected values
    assert (agg["q_mean"] - agg["p_true"]).abs().max() < 0.04
    assert (agg["c_mean"] - agg["c_true"]).abs().max() < 0.02
    again = synthetic_observations(
        n_queries=3,
        models=["x", "y"],
        n_rewrites=400,
        n_decodes=10,
        include_original=True,
        datasets=["s1", "s2"],
        seed=3,
    )
    assert again.observations.equals(obs) and again.truth.equals(data.truth)


def test_synthetic_error_rows_are_failed_generations():
    data = synthetic_observations(n_queries=10, error_rate=0.2, seed=1)
    errors = data.observations.filter(pl.col("status") == "error")
    assert 0.1 < errors.height / data.observations.height < 0.3
    assert errors["score"].null_count() == errors.height
    assert errors["cost_usd"].null_count() == errors.height
    ok = data.observations.filter(pl.col("status") == "ok")
    assert ok["score"].null_count() == 0
    assert aggregate(data.observations)["n_obs"].sum() == ok.height
    with pytest.raises(ValueError, match="error_rate"):
        synthetic_observations(error_rate=1.0)
