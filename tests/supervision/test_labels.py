"""Hard, soft, pairwise and listwise labels against hand-made frames and a loop reference."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.supervision import (
    aggregate,
    hard_labels,
    listwise_ranking,
    pairwise_preferences,
    rank_order,
    soft_labels,
)
from tests.supervision.reference import (
    complete_queries,
    hand_frame,
    obs_frames,
    ok_rows,
    ref_aggregate,
    ref_order,
    ref_softmax,
)

HYP = settings(max_examples=80, deadline=None)


def agg_frame(rows: list[tuple[str, str, float, float]]) -> pl.DataFrame:
    """Hand-made aggregate: (query_id, model, u, c_mean) in dataset 'd'."""
    return pl.DataFrame(
        [("d", q, m, u, c) for q, m, u, c in rows],
        schema=["dataset", "query_id", "model", "u", "c_mean"],
        orient="row",
    )


def test_hand_example_labels():
    agg = aggregate(hand_frame())
    hard = hard_labels(agg, ["A", "B"])
    # q1: A (0.517) beats B (0.335); q2: A and B tie on u = 0 and c = 0 → pool order.
    assert hard.select("query_id", "label", "label_index", "n_tied").rows() == [
        ("q1", "A", 0, 1),
        ("q2", "A", 0, 2),
    ]
    assert hard["u"].to_list() == pytest.approx([0.5167572892, 0.0])
    reversed_pool = hard_labels(agg, ["B", "A"])
    assert reversed_pool["label"].to_list() == ["A", "B"]
    assert reversed_pool["label_index"].to_list() == [1, 0]


def test_tie_on_utility_is_broken_by_cost_then_pool_order():
    # u equal to 9 decimals (0.5 vs 0.5 + 1e-12) → the cheaper model wins whatever the pool order.
    agg = agg_frame([("q", "A", 0.5 + 1e-12, 0.4), ("q", "B", 0.5, 0.1), ("q", "C", 0.2, 0.0)])
    for pool in (["A", "B", "C"], ["C", "A", "B"]):
        assert hard_labels(agg, pool)["label"].to_list() == ["B"]
        assert hard_labels(agg, pool)["n_tied"].to_list() == [2]
    # equal u and equal cost → earlier in the pool
    agg = agg_frame([("q", "A", 0.5, 0.1), ("q", "B", 0.5, 0.1)])
    assert hard_labels(agg, ["B", "A"])["label"].to_list() == ["B"]
    ranking = listwise_ranking(agg, ["B", "A"])
    assert ranking.select("model", "rank").rows() == [("B", 1), ("A", 2)]
    pairs = pairwise_preferences(agg, ["B", "A"])
    assert pairs.select("model_a", "model_b", "margin", "a_preferred").rows() == [
        ("B", "A", 0.0, True),
        ("A", "B", 0.0, False),
    ]


def test_negative_zero_ties_with_zero():
    agg = agg_frame([("q", "A", -0.0, 0.0), ("q", "B", 0.0, 0.0)])
    assert hard_labels(agg, ["A", "B"])["n_tied"].to_list() == [2]
    assert hard_labels(agg, ["A", "B"])["label"].to_list() == ["A"]


def test_soft_labels_hand_values():
    agg = agg_frame([("q", "A", 0.3, 0.0), ("q", "B", 0.1, 0.0)])
    soft = soft_labels(agg, ["A", "B"], tau=0.1)
    e = np.exp(2.0)
    assert soft["prob"].to_list() == pytest.approx([e / (e + 1), 1 / (e + 1)])
    with pytest.raises(ValueError, match="tau"):
        soft_labels(agg, ["A", "B"], tau=0.0)


def test_missing_cells_raise_or_drop():
    agg = agg_frame([("q1", "A", 0.3, 0.0), ("q1", "B", 0.1, 0.0), ("q2", "A", 0.4, 0.0)])
    for fn in (hard_labels, soft_labels, listwise_ranking, pairwise_preferences):
        with pytest.raises(ValueError, match=r"\['B'\] at dataset='d', query_id='q2'"):
            fn(agg, ["A", "B"])
        out = fn(agg, ["A", "B"], missing="drop")
        assert out["query_id"].unique().to_list() == ["q1"]
    with pytest.raises(ValueError, match="missing must be"):
        hard_labels(agg, ["A", "B"], missing="ignore")


def test_rank_order_broadcasts_over_leading_axes():
    u = np.array([[[0.1, 0.2], [0.3, 0.3]], [[0.0, -1.0], [0.5, 0.5]]])
    c = np.array([[[0.0, 0.0], [0.9, 0.1]], [[0.0, 0.0], [0.0, 0.0]]])
    assert rank_order(u, c)[..., 0].tolist() == [[1, 1], [0, 0]]


@HYP
@given(obs_frames(), st.sampled_from([0.05, 0.1, 1.0]))
def test_labels_match_reference(case, tau):
    frame, models = case
    agg = aggregate(frame)
    ref = complete_queries(ref_aggregate(ok_rows(frame)), models)
    hard = hard_labels(agg, models, missing="drop")
    soft = soft_labels(agg, models, tau=tau, missing="drop")
    rank = listwise_ranking(agg, models, missing="drop")
    pairs = pairwise_preferences(agg, models, missing="drop")
    assert [tuple(k) for k in hard.select("dataset", "query_id").rows()] == list(ref)
    n = len(models)
    for qi, (key, stats) in enumerate(ref.items()):
        us = [s["u"] for s in stats]
        cs = [s["c_mean"] for s in stats]
        order = ref_order(us, cs)
        row = hard.row(qi, named=True)
        assert (row["label"], row["label_index"]) == (models[order[0]], order[0]), key
        assert row["n_tied"] == sum(round(x, 9) == round(us[order[0]], 9) for x in us)
        probs = soft["prob"].to_list()[qi * n : (qi + 1) * n]
        assert probs == pytest.approx(ref_softmax(us, tau), abs=1e-12)
        ranks = rank["rank"].to_list()[qi * n : (qi + 1) * n]
        assert ranks == [order.index(i) + 1 for i in range(n)]
        got_pairs = pairs.filter(
            (pl.col("dataset") == key[0]) & (pl.col("query_id") == key[1])
        ).select("model_a", "model_b", "margin", "a_preferred")
        want = [
            (models[a], models[b], us[a] - us[b], order.index(a) < order.index(b))
            for a, b in itertools.permutations(range(n), 2)
        ]
        assert [r[:2] + (r[3],) for r in got_pairs.rows()] == [w[:2] + (w[3],) for w in want]
        assert got_pairs["margin"].to_list() == pytest.approx([w[2] for w in want], abs=1e-12)
