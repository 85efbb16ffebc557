"""Targets validation and the adapter from long supervision frames."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.routers import (
    BatchedTargets,
    Targets,
    batched_targets_from_frame,
    targets_from_frame,
)

SUPERVISION = pl.DataFrame(
    {
        "dataset": ["gpqa"] * 4,
        "query_id": ["q2", "q1", "q2", "q1"],
        "model": ["b", "a", "a", "b"],
        "q_mean": [0.2, 0.8, 0.6, 0.4],
        "c_mean": [1.0, 0.0, 0.5, 0.25],
        "q_std": [0.1, 0.3, 0.2, 0.0],
    }
)


def test_targets_from_frame_places_rows_and_columns_by_the_given_orders():
    t = targets_from_frame(SUPERVISION, query_ids=["q1", "q2"], models=["a", "b"])
    np.testing.assert_array_equal(t.q, [[0.8, 0.4], [0.6, 0.2]])
    np.testing.assert_array_equal(t.c, [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(t.sigma, [[0.3, 0.0], [0.2, 0.1]])
    assert t.models == ("a", "b")
    # Another order permutes the arrays accordingly.
    t2 = targets_from_frame(SUPERVISION, query_ids=["q2", "q1"], models=["b", "a"])
    np.testing.assert_array_equal(t2.q, [[0.2, 0.6], [0.4, 0.8]])


def test_targets_from_frame_subset_and_no_sigma():
    t = targets_from_frame(SUPERVISION, query_ids=["q2"], models=["a"] + ["b"], sigma_col=None)
    assert t.sigma is None
    np.testing.assert_array_equal(t.q, [[0.6, 0.2]])


def test_targets_from_frame_missing_pair_is_named():
    frame = SUPERVISION.filter(~((pl.col("query_id") == "q2") & (pl.col("model") == "b")))
    with pytest.raises(ValueError, match=r"no row for \{'query_id': 'q2', 'model': 'b'\}"):
        targets_from_frame(frame, query_ids=["q1", "q2"], models=["a", "b"])
    with pytest.raises(ValueError, match="'q3'"):
        targets_from_frame(SUPERVISION, query_ids=["q1", "q3"], models=["a", "b"])


def test_targets_from_frame_duplicates_nulls_and_mixed_datasets():
    dup = pl.concat([SUPERVISION, SUPERVISION.head(1)])
    with pytest.raises(ValueError, match=r"2 rows for \{'query_id': 'q2', 'model': 'b'\}"):
        targets_from_frame(dup, query_ids=["q1", "q2"], models=["a", "b"])
    nulls = SUPERVISION.with_columns(
        pl.when(pl.col("query_id") == "q1").then(None).otherwise(pl.col("c_mean")).alias("c_mean")
    )
    with pytest.raises(ValueError, match="null/NaN 'c_mean'"):
        targets_from_frame(nulls, query_ids=["q1", "q2"], models=["a", "b"])
    mixed = SUPERVISION.with_columns(pl.Series("dataset", ["gpqa", "gpqa", "math500", "gpqa"]))
    with pytest.raises(ValueError, match="mixes 2 datasets"):
        targets_from_frame(mixed, query_ids=["q1", "q2"], models=["a", "b"])
    with pytest.raises(ValueError, match=r"lacks columns \['q_std'\]"):
        targets_from_frame(SUPERVISION.drop("q_std"), query_ids=["q1"], models=["a", "b"])


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(4))))
def test_targets_from_frame_does_not_depend_on_row_order(perm):
    shuffled = SUPERVISION[perm]
    a = targets_from_frame(SUPERVISION, query_ids=["q1", "q2"], models=["a", "b"])
    b = targets_from_frame(shuffled, query_ids=["q1", "q2"], models=["a", "b"])
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.sigma, b.sigma)


def test_batched_targets_from_draws_frame_matches_a_slow_reference():
    rng = np.random.default_rng(0)
    rows = []
    for d in (0, 1, 2):
        for qid in ("x", "y"):
            for m in ("a", "b", "c"):
                rows.append((d, qid, m, float(rng.integers(0, 2)), float(rng.random())))
    frame = pl.DataFrame(rows, schema=["draw", "query_id", "model", "q", "c"], orient="row")
    bt = batched_targets_from_frame(frame.reverse(), query_ids=["y", "x"], models=["c", "a", "b"])
    assert bt.q.shape == (3, 2, 3) and bt.sigma is None and bt.models == ("c", "a", "b")
    for d, qid, m, q, c in rows:
        i, j = ["y", "x"].index(qid), ["c", "a", "b"].index(m)
        assert bt.q[d, i, j] == q and bt.c[d, i, j] == c
    # draw order can be chosen explicitly
    bt2 = batched_targets_from_frame(
        frame, query_ids=["y", "x"], models=["c", "a", "b"], draws=[2, 0]
    )
    np.testing.assert_array_equal(bt2.q[0], bt.q[2])


def test_targets_out_of_range_are_rejected():
    with pytest.raises(
        ValueError, match=r"targets.q must lie in \[0.0, 1.0\].*index \[1, 0\] holds 1.5"
    ):
        Targets(q=[[0.1, 0.2], [1.5, 0.3]], c=[[0, 0], [0, 0]])


def test_targets_validation_messages():
    with pytest.raises(ValueError, match="2-dimensional"):
        Targets(q=[0.1, 0.2], c=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"targets.c has shape \(1, 3\), q has \(1, 2\)"):
        Targets(q=[[0.1, 0.2]], c=[[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="at least 2 models"):
        Targets(q=[[0.1]], c=[[0.1]])
    with pytest.raises(ValueError, match=r"non-finite value at index \[0, 1\]"):
        Targets(q=[[0.1, np.inf]], c=[[0.1, 0.2]])
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        Targets(q=[[0.1, 0.2]], c=[[0.1, 0.2]], sigma=[[0.0, -0.1]])
    with pytest.raises(ValueError, match="names 3 models"):
        Targets(q=[[0.1, 0.2]], c=[[0.1, 0.2]], models=("a", "b", "c"))


def test_batched_stack_draw_and_utility():
    a = Targets(q=[[1.0, 0.0]], c=[[0.5, 0.0]], models=("x", "y"))
    b = Targets(q=[[0.0, 1.0]], c=[[0.0, 1.0]], models=("x", "y"))
    bt = BatchedTargets.stack([a, b])
    assert len(bt) == 2 and bt.n_queries == 1 and bt.n_models == 2
    np.testing.assert_array_equal(bt.draw(1).q, b.q)
    np.testing.assert_allclose(a.utility(lam=0.1), [[0.95, 0.0]])
    s = Targets(q=[[0.5, 0.5]], c=[[0.0, 0.0]], sigma=[[0.5, 0.0]])
    np.testing.assert_allclose(s.utility(0.05, 0.2), [[0.4, 0.5]])
    with pytest.raises(ValueError, match="only some draws have sigma"):
        BatchedTargets.stack([a, Targets(q=a.q, c=a.c, sigma=[[0, 0]], models=("x", "y"))])
