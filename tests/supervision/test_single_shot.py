"""Single-shot draws and slot labels."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.supervision import (
    draws_to_arrays,
    prepare_observations,
    single_shot,
    slot_labels,
)
from tests.supervision.reference import (
    LAM,
    any_complete_query,
    hand_frame,
    obs_frames,
    ok_rows,
    random_obs,
    ref_order,
)

HYP = settings(max_examples=80, deadline=None)


def test_hand_example_draws_are_observations():
    shots = single_shot(hand_frame(), ["A", "B"], draws=50, seed=3)
    assert shots.draws.columns == [
        "draw",
        "dataset",
        "query_id",
        "model",
        "rewrite_id",
        "decode_id",
        "q",
        "c",
        "u",
    ]
    assert shots.draws.height == 50 * 2 * 2 and shots.labels.height == 50 * 2
    prep = prepare_observations(hand_frame())
    joined = shots.draws.join(
        prep, on=["dataset", "query_id", "model", "rewrite_id", "decode_id"], how="left"
    )
    assert joined["score"].null_count() == 0
    assert (joined["q"] == joined["score"]).all() and (joined["c"] == joined["c_norm"]).all()
    assert joined["u"].to_list() == pytest.approx((joined["q"] - LAM * joined["c"]).to_list())
    # q2: every observation has score 0 at cost 0 for both models → always a tie → pool order.
    q2 = shots.labels.filter(pl.col("query_id") == "q2")
    assert set(q2["label"].to_list()) == {"A"} and set(q2["n_tied"].to_list()) == {2}


def test_same_seed_same_draws_and_row_order_does_not_matter():
    frame = random_obs(5, n_queries=4, k=3, m=3, discrete=False)
    a = single_shot(frame, ["a", "b", "c"], draws=20, seed=11)
    b = single_shot(
        frame.sample(fraction=1.0, shuffle=True, seed=1), ["a", "b", "c"], draws=20, seed=11
    )
    assert a.draws.equals(b.draws) and a.labels.equals(b.labels)
    c = single_shot(frame, ["a", "b", "c"], draws=20, seed=12)
    assert not a.draws.equals(c.draws)


def test_draws_are_uniform_over_a_cells_observations():
    frame = random_obs(0, n_queries=1, models=("a",), k=2, m=2, discrete=False)
    shots = single_shot(frame, ["a"], draws=4000, seed=0)
    counts = Counter(zip(shots.draws["rewrite_id"], shots.draws["decode_id"], strict=True))
    assert set(counts) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    # each share is 0.25 ± 3 standard errors (0.0068)
    assert all(abs(n / 4000 - 0.25) < 0.021 for n in counts.values())


def test_single_observation_per_cell_gives_identical_draws():
    frame = hand_frame().filter((pl.col("rewrite_id") == 1) & (pl.col("decode_id") == 0))
    shots = single_shot(frame, ["A", "B"], draws=7)
    per_draw = shots.labels.group_by("query_id").agg(pl.col("label").n_unique())
    assert per_draw["label"].to_list() == [1, 1]


def test_missing_cells_and_argument_errors():
    frame = hand_frame().filter(~((pl.col("query_id") == "q2") & (pl.col("model") == "B")))
    with pytest.raises(ValueError, match=r"\['B'\] at dataset='d', query_id='q2'"):
        single_shot(frame, ["A", "B"])
    shots = single_shot(frame, ["A", "B"], draws=3, missing="drop")
    assert shots.labels["query_id"].unique().to_list() == ["q1"]
    with pytest.raises(ValueError, match="not in the pool"):
        single_shot(hand_frame(), ["A"])
    with pytest.raises(ValueError, match="draws must be"):
        single_shot(hand_frame(), ["A", "B"], draws=0)


def test_draws_to_arrays_shapes():
    frame = random_obs(2, n_datasets=2, n_queries=3, k=2, m=2)
    shots = single_shot(frame, ["c", "a", "b"], draws=5, seed=0)
    arr = draws_to_arrays(shots.draws, ["c", "a", "b"])
    assert arr["q"].shape == (5, 6, 3) and arr["c"].shape == (5, 6, 3)
    row = shots.draws.filter(
        (pl.col("draw") == 4) & (pl.col("dataset") == "d1") & (pl.col("query_id") == "q0")
    )
    qi = arr.keys.rows().index(("d1", "q0"))
    by_model = dict(zip(row["model"], row["q"], strict=True))
    assert arr["q"][4, qi].tolist() == [by_model["c"], by_model["a"], by_model["b"]]


@HYP
@given(obs_frames(), st.integers(0, 1000))
def test_single_shot_labels_match_reference(case, seed):
    frame, models = case
    if not any_complete_query(frame, models):
        with pytest.raises(ValueError, match="no query has an ok observation for every pool model"):
            single_shot(frame, models, draws=6, seed=seed, missing="drop")
        return
    shots = single_shot(frame, models, draws=6, seed=seed, missing="drop")
    rows = {
        (r["dataset"], r["query_id"], r["model"], r["rewrite_id"], r["decode_id"]): r
        for r in ok_rows(frame)
    }
    complete = defaultdict(set)
    for d, q, m, _, _ in rows:
        complete[(d, q)].add(m)
    queries = sorted(k for k, v in complete.items() if len(v) == len(models))
    assert shots.labels.filter(pl.col("draw") == 0).select("dataset", "query_id").rows() == queries
    draws = defaultdict(dict)
    for r in shots.draws.to_dicts():
        obs = rows[(r["dataset"], r["query_id"], r["model"], r["rewrite_id"], r["decode_id"])]
        assert (r["q"], r["c"]) == (obs["score"], pytest.approx(obs["c_norm"], abs=1e-15))
        draws[(r["draw"], r["dataset"], r["query_id"])][r["model"]] = (r["q"], r["c"])
    for lab in shots.labels.to_dicts():
        cells = draws[(lab["draw"], lab["dataset"], lab["query_id"])]
        us = [cells[m][0] - LAM * cells[m][1] for m in models]
        order = ref_order(us, [cells[m][1] for m in models])
        assert lab["label"] == models[order[0]]
        assert lab["u"] == pytest.approx(us[order[0]], abs=1e-12)


@HYP
@given(obs_frames())
def test_slot_labels_match_reference(case):
    frame, models = case
    if not any_complete_query(frame, models):
        with pytest.raises(ValueError, match="no query has an ok observation"):
            slot_labels(frame, models)
        return
    got = {
        (r["dataset"], r["query_id"], r["rewrite_id"], r["decode_id"]): r["label"]
        for r in slot_labels(frame, models).to_dicts()
    }
    slots = defaultdict(dict)
    for r in ok_rows(frame):
        slots[(r["dataset"], r["query_id"], r["rewrite_id"], r["decode_id"])][r["model"]] = r
    want = {}
    for key, cells in slots.items():
        if len(cells) == len(models):
            us = [cells[m]["score"] - LAM * cells[m]["c_norm"] for m in models]
            want[key] = models[ref_order(us, [cells[m]["c_norm"] for m in models])[0]]
    assert got == want


def test_slot_labels_hand_example():
    labels = slot_labels(hand_frame(), ["A", "B"])
    assert labels.height == 8
    q1 = labels.filter(pl.col("query_id") == "q1").sort("rewrite_id", "decode_id")
    # slot (0,0): A 1 - 0.05·0 vs B 1 - 0.05·1 → A; (0,1): A 1 vs B 0 → A;
    # (1,0): A 0 - 0.05·0.25 vs B 1 - 0.05 → B; (1,1): A 0.5 - 0.0125 vs B 0 - 0.05 → A
    assert q1["label"].to_list() == ["A", "A", "B", "A"]
    assert np.allclose(q1["u"].to_numpy(), [1.0, 0.975, 0.95, 0.4875])
