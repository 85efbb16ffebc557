"""Validation, cost normalisation, aggregation and the dense-array view."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.supervision import (
    AGGREGATE_COLUMNS,
    aggregate,
    cost_bounds,
    prepare_observations,
    to_arrays,
)
from tests.supervision.reference import hand_frame, obs_frames, ok_rows, random_obs, ref_aggregate

HYP = settings(max_examples=80, deadline=None)


def _cell(agg: pl.DataFrame, query: str, model: str) -> dict:
    return agg.filter((pl.col("query_id") == query) & (pl.col("model") == model)).row(0, named=True)


def test_hand_example():
    agg = aggregate(hand_frame())
    assert agg.columns == list(AGGREGATE_COLUMNS)
    assert agg.height == 4
    # q1/A: scores 1, 1, 0, 0.5 → mean 0.625; squared deviations sum 0.6875 → var 0.6875/3;
    # c_norm 0, 0.5, 0.25, 0.25 → 0.25; u = 0.625 - 0.05·0.25 - 0.2·0.478714 = 0.516757.
    a = _cell(agg, "q1", "A")
    assert a["n_obs"] == 4 and a["n_rewrites"] == 2
    assert a["q_mean"] == pytest.approx(0.625)
    assert a["q_std"] == pytest.approx(math.sqrt(0.6875 / 3))
    assert a["q_std"] == pytest.approx(0.4787135539)
    assert a["c_mean"] == pytest.approx(0.25)
    assert a["u"] == pytest.approx(0.5167572892)
    # q1/B: scores 1, 0, 1, 0 → mean 0.5, std sqrt(1/3); cost at the maximum → c = 1.
    b = _cell(agg, "q1", "B")
    assert (b["q_mean"], b["c_mean"]) == pytest.approx((0.5, 1.0))
    assert b["q_std"] == pytest.approx(0.5773502692)
    assert b["u"] == pytest.approx(0.5 - 0.05 - 0.2 * 0.5773502692)
    # q2: constant zero scores at the minimum cost → everything 0.
    for model in ("A", "B"):
        z = _cell(agg, "q2", model)
        assert (z["q_mean"], z["q_std"], z["c_mean"], z["u"]) == (0.0, 0.0, 0.0, 0.0)


def test_hand_example_custom_weights():
    agg = aggregate(hand_frame(), lam=1.0, beta=0.0)
    assert _cell(agg, "q1", "A")["u"] == pytest.approx(0.625 - 0.25)
    assert _cell(agg, "q1", "B")["u"] == pytest.approx(-0.5)


def test_hand_example_risk_modes():
    rewrite = aggregate(hand_frame(), risk="rewrite")
    decode = aggregate(hand_frame(), risk="decode")
    # q1/A: per-rewrite means 1 and 0.25 → std 0.75/√2; within stds 0 and 0.5/√2 → mean 0.5/(2√2)
    assert _cell(rewrite, "q1", "A")["q_std"] == pytest.approx(0.75 / math.sqrt(2))
    assert _cell(decode, "q1", "A")["q_std"] == pytest.approx(0.25 / math.sqrt(2))
    assert _cell(rewrite, "q1", "A")["u"] == pytest.approx(0.6125 - 0.2 * 0.5303300859)
    assert _cell(decode, "q1", "A")["u"] == pytest.approx(0.6125 - 0.2 * 0.1767766953)
    # q1/B: both rewrites have mean 0.5 → rewrite risk 0; each has std √0.5 → decoding risk √0.5
    assert _cell(rewrite, "q1", "B")["q_std"] == 0.0
    assert _cell(decode, "q1", "B")["q_std"] == pytest.approx(math.sqrt(0.5))


def test_single_observation_has_zero_std_not_null():
    frame = hand_frame().filter((pl.col("rewrite_id") == 0) & (pl.col("decode_id") == 0))
    agg = aggregate(frame)
    assert agg["n_obs"].to_list() == [1, 1, 1, 1]
    assert agg["q_std"].null_count() == 0
    assert agg["q_std"].to_list() == [0.0, 0.0, 0.0, 0.0]
    assert aggregate(frame, risk="rewrite")["q_std"].to_list() == [0.0] * 4
    assert aggregate(frame, risk="decode")["q_std"].to_list() == [0.0] * 4


def test_constant_cost_normalises_to_zero():
    frame = hand_frame().with_columns(cost_usd=pl.lit(0.007))
    prep = prepare_observations(frame)
    assert prep["c_norm"].to_list() == [0.0] * 16


def test_cost_normalised_per_dataset():
    frame = pl.concat(
        [
            hand_frame(),
            hand_frame().with_columns(dataset=pl.lit("e"), cost_usd=pl.col("cost_usd") * 10),
        ]
    )
    prep = prepare_observations(frame)
    by_ds = prep.group_by("dataset").agg(
        pl.col("c_norm").min().alias("lo"), pl.col("c_norm").max().alias("hi")
    )
    assert by_ds.sort("dataset").rows() == [("d", 0.0, 1.0), ("e", 0.0, 1.0)]
    bounds = cost_bounds(frame)
    assert bounds.rows() == [("d", 0.001, 0.005), ("e", 0.01, 0.05)]


def test_external_cost_bounds():
    bounds = pl.DataFrame({"dataset": ["d"], "cost_min": [0.0], "cost_max": [0.01]})
    prep = prepare_observations(hand_frame(), cost_bounds=bounds)
    assert prep["c_norm"].max() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no row for dataset"):
        prepare_observations(hand_frame(), cost_bounds=bounds.with_columns(dataset=pl.lit("x")))


def test_only_ok_rows_are_used():
    bad = pl.DataFrame(
        {
            "dataset": ["d"],
            "query_id": ["q1"],
            "model": ["A"],
            "rewrite_id": [0],
            "decode_id": [7],
            "score": [None],
            "cost_usd": [float("nan")],
            "status": ["error"],
        },
        schema=hand_frame().schema,
    )
    with_error = pl.concat([hand_frame(), bad])
    assert aggregate(with_error).equals(aggregate(hand_frame()))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("cost_usd", float("nan")),
        ("cost_usd", float("inf")),
        ("score", float("-inf")),
        ("score", None),
    ],
)
def test_non_finite_values_raise_naming_column_and_key(column, value):
    frame = hand_frame().with_columns(
        pl.when(
            (pl.col("query_id") == "q2") & (pl.col("model") == "B") & (pl.col("decode_id") == 1)
        )
        .then(pl.lit(value, dtype=pl.Float64))
        .otherwise(pl.col(column))
        .alias(column)
    )
    with pytest.raises(ValueError, match=rf"column '{column}'.*query_id='q2', model='B'"):
        aggregate(frame)


def test_validation_errors():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['cost_usd'\]"):
        aggregate(hand_frame().drop("cost_usd"))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['score'\]"):
        aggregate(hand_frame().drop("score").lazy())
    with pytest.raises(ValueError, match="share an observation key.*query_id='q1'"):
        aggregate(pl.concat([hand_frame(), hand_frame().head(1)]))
    mixed = pl.concat(
        [
            hand_frame().with_columns(view=pl.lit("train")),
            hand_frame().with_columns(
                view=pl.lit("test_decode"), query_id=pl.lit("t") + pl.col("query_id")
            ),
        ]
    )
    with pytest.raises(ValueError, match="mix several view values"):
        aggregate(mixed)
    with pytest.raises(ValueError, match="no rows with status == 'ok'"):
        aggregate(hand_frame().with_columns(status=pl.lit("error")))
    with pytest.raises(ValueError, match="lam must be"):
        aggregate(hand_frame(), lam=-1.0)
    with pytest.raises(ValueError, match="risk must be"):
        aggregate(hand_frame(), risk="both")
    with pytest.raises(TypeError, match="DataFrame or LazyFrame"):
        aggregate(hand_frame().to_dicts())


def _as_dict(agg: pl.DataFrame) -> dict:
    return {(r["dataset"], r["query_id"], r["model"]): r for r in agg.to_dicts()}


@HYP
@given(obs_frames(), st.sampled_from(["all", "rewrite", "decode"]))
def test_aggregate_matches_reference(case, risk):
    frame, _ = case
    got = _as_dict(aggregate(frame, risk=risk))
    want = ref_aggregate(ok_rows(frame), risk=risk)
    assert got.keys() == want.keys()
    for key, ref in want.items():
        row = got[key]
        assert row["n_obs"] == ref["n_obs"] and row["n_rewrites"] == ref["n_rewrites"]
        for col in ("q_mean", "q_std", "c_mean", "u"):
            assert row[col] == pytest.approx(ref[col], abs=1e-12), (key, col)


@HYP
@given(obs_frames(), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_aggregate_ignores_row_order_and_partitioning(case, seed, n_parts):
    frame, _ = case
    base = aggregate(frame)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    assert aggregate(shuffled).equals(base)
    # split into chunks (like reading several Parquet parts) and concatenate lazily
    bounds = np.linspace(0, shuffled.height, n_parts + 1).astype(int)
    parts = [
        shuffled.slice(lo, hi - lo).lazy() for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    assert aggregate(pl.concat(parts)).equals(base)


def test_to_arrays_pool_order_and_missing_cells():
    agg = aggregate(hand_frame())
    arr = to_arrays(agg, ["B", "A"], ["q_mean", "c_mean"])
    assert arr.keys.rows() == [("d", "q1"), ("d", "q2")]
    assert arr.models == ("B", "A")
    np.testing.assert_allclose(arr["q_mean"], [[0.5, 0.625], [0.0, 0.0]])
    partial = agg.filter(~((pl.col("query_id") == "q2") & (pl.col("model") == "B")))
    with pytest.raises(ValueError, match=r"model\(s\) \['B'\] at dataset='d', query_id='q2'"):
        to_arrays(partial, ["A", "B"], ["u"])
    dropped = to_arrays(partial, ["A", "B"], ["u"], missing="drop")
    assert dropped.keys.rows() == [("d", "q1")]
    with pytest.raises(ValueError, match=r"model\(s\) \['B'\] that are not in the pool"):
        to_arrays(agg, ["A"], ["u"])
    with pytest.raises(ValueError, match="more than once"):
        to_arrays(agg, ["A", "A"], ["u"])


def test_random_obs_generator_is_seeded():
    assert random_obs(3, p_drop_obs=0.3).equals(random_obs(3, p_drop_obs=0.3))
