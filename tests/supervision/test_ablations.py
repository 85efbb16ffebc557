"""The Table-2 ablations and k×m sub-grids."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.supervision import (
    ABLATIONS,
    AGGREGATE_COLUMNS,
    aggregate,
    full_dars,
    get_ablation,
    input_only,
    output_only,
    prepare_observations,
    subgrid_dars,
    subgrid_observations,
    without_risk,
)
from tests.supervision.reference import hand_frame, obs_frames, ok_rows, random_obs, ref_ablation

HYP = settings(max_examples=80, deadline=None)


def _q1a(agg: pl.DataFrame) -> dict:
    return agg.filter((pl.col("query_id") == "q1") & (pl.col("model") == "A")).row(0, named=True)


def test_hand_example_ablations():
    frame = hand_frame()
    # input-only keeps decode 0 of each rewrite: q1/A scores 1 and 0, c_norm 0 and 0.25.
    io = _q1a(input_only(frame))
    assert (io["n_obs"], io["q_mean"], io["c_mean"]) == (2, 0.5, pytest.approx(0.125))
    assert io["q_std"] == pytest.approx(0.7071067812)
    assert io["u"] == pytest.approx(0.5 - 0.05 * 0.125 - 0.2 * 0.7071067812)
    # output-only: no original collected → rewrite 0: scores 1, 1; c_norm 0, 0.5.
    oo = _q1a(output_only(frame))
    assert (oo["n_obs"], oo["q_mean"], oo["q_std"]) == (2, 1.0, 0.0)
    assert oo["u"] == pytest.approx(1.0 - 0.05 * 0.25)
    # w/o risk: u = 0.625 - 0.05·0.25; q_std is still reported.
    wr = _q1a(without_risk(frame))
    assert wr["u"] == pytest.approx(0.6125)
    assert wr["q_std"] == pytest.approx(0.4787135539)
    # cost is normalised on the full frame, not on the subset (c_norm of the kept rows above)
    assert _q1a(full_dars(frame))["u"] == pytest.approx(0.5167572892)


def test_output_only_prefers_the_original_query():
    original = (
        hand_frame().filter(pl.col("rewrite_id") == 1).with_columns(rewrite_id=pl.lit(-1, pl.Int64))
    )
    frame = pl.concat([hand_frame(), original.with_columns(score=1.0 - pl.col("score"))])
    oo = _q1a(output_only(frame))
    # original of q1/A: scores 1 - (0, 0.5) = 1, 0.5
    assert (oo["n_obs"], oo["q_mean"]) == (2, 0.75)


def test_all_ablations_share_the_aggregate_schema():
    frame = random_obs(1, n_queries=3, k=3, m=2, include_original=True)
    schema = aggregate(frame).schema
    for name, fn in ABLATIONS.items():
        out = fn(frame)
        assert out.columns == list(AGGREGATE_COLUMNS), name
        assert out.schema == schema, name
    assert list(ABLATIONS) == [
        "input_only",
        "output_only",
        "without_risk",
        "rewrite_risk",
        "decoding_risk",
        "full_dars",
    ]
    with pytest.raises(KeyError, match="valid: input_only, output_only"):
        get_ablation("single_shot")


@HYP
@given(obs_frames(), st.sampled_from(sorted(ABLATIONS)))
def test_ablations_match_reference(case, name):
    frame, _ = case
    got = {
        (r["dataset"], r["query_id"], r["model"]): r for r in get_ablation(name)(frame).to_dicts()
    }
    want = ref_ablation(ok_rows(frame), name)
    assert got.keys() == want.keys()
    for key, ref in want.items():
        assert got[key]["n_obs"] == ref["n_obs"]
        for col in ("q_mean", "q_std", "c_mean", "u"):
            assert got[key][col] == pytest.approx(ref[col], abs=1e-12), (name, key, col)


def test_subgrid_hand_example_full_grid_equals_full_dars():
    assert subgrid_dars(hand_frame(), k=2, m=2).equals(full_dars(hand_frame()))
    with pytest.raises(ValueError, match="k=3 exceeds"):
        subgrid_observations(hand_frame(), k=3, m=1)
    with pytest.raises(ValueError, match="m=3 exceeds"):
        subgrid_observations(hand_frame(), k=1, m=3)
    with pytest.raises(ValueError, match="k must be"):
        subgrid_observations(hand_frame(), k=0, m=1)


def test_subgrid_uses_full_frame_cost_scale():
    frame = hand_frame()
    sub = subgrid_observations(frame, k=1, m=1, seed=4)
    full = prepare_observations(frame)
    joined = sub.join(full, on=["dataset", "query_id", "model", "rewrite_id", "decode_id"])
    assert (joined["c_norm"] == joined["c_norm_right"]).all()


@HYP
@given(obs_frames(), st.integers(1, 3), st.integers(1, 3), st.integers(0, 99))
def test_subgrid_properties(case, k, m, seed):
    frame, _ = case
    prep = prepare_observations(frame)
    k_max = prep.group_by("dataset", "query_id").agg(pl.col("rewrite_id").n_unique())["rewrite_id"]
    m_max = prep.group_by("dataset", "query_id", "rewrite_id").agg(pl.col("decode_id").n_unique())
    if k > k_max.max() or m > m_max["decode_id"].max():
        with pytest.raises(ValueError, match="exceeds"):
            subgrid_observations(frame, k=k, m=m, seed=seed)
        return
    sub = subgrid_observations(frame, k=k, m=m, seed=seed)
    # same seed and same observations (any row order) → same subset
    again = subgrid_observations(
        frame.sample(fraction=1.0, shuffle=True, seed=seed), k=k, m=m, seed=seed
    )
    assert sub.equals(again)
    # per query: min(k, available) formulations, the same for every model that has them
    for (d, q), part in prep.group_by("dataset", "query_id"):
        kept = sub.filter((pl.col("dataset") == d) & (pl.col("query_id") == q))
        available = set(part["rewrite_id"].to_list())
        chosen = set(kept["rewrite_id"].to_list())
        assert chosen <= available
        assert len(chosen) == min(k, len(available))
        for r in chosen:
            slots = set(part.filter(pl.col("rewrite_id") == r)["decode_id"].to_list())
            kept_slots = set(kept.filter(pl.col("rewrite_id") == r)["decode_id"].to_list())
            assert kept_slots <= slots and len(kept_slots) == min(m, len(slots))
            # every observation at a kept (rewrite, decode) slot is kept, for every model
            at_slots = part.filter(
                (pl.col("rewrite_id") == r) & pl.col("decode_id").is_in(list(kept_slots))
            )
            assert at_slots.height == kept.filter(pl.col("rewrite_id") == r).height


def test_subgrid_choices_vary_with_seed():
    frame = random_obs(0, n_queries=4, k=5, m=5)
    picks = {
        tuple(
            subgrid_observations(frame, k=2, m=2, seed=s).select("rewrite_id", "decode_id").rows()
        )
        for s in range(5)
    }
    assert len(picks) > 1


def test_subgrid_of_a_dataset_does_not_depend_on_other_datasets():
    a = random_obs(3, n_queries=4, k=4, m=3)
    b = random_obs(4, n_queries=4, k=4, m=3).with_columns(dataset=pl.lit("other"))
    alone = subgrid_observations(a, k=2, m=2, seed=9)
    joint = subgrid_observations(pl.concat([b, a]), k=2, m=2, seed=9)
    assert joint.filter(pl.col("dataset") == "d0").equals(alone)
