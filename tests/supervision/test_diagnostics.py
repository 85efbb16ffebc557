"""Figure-2 diagnostics and the vectorised bootstrap."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dars.supervision import (
    METRIC_COLUMNS,
    bootstrap_ratio,
    diagnostics,
    full_dars,
    hard_labels,
    outcome_instability,
    single_shot,
    single_vs_da_disagreement,
    slot_labels,
    variance_components,
    variance_split,
    winner_flip_rate,
)
from dars.supervision.core import dataset_seed
from tests.supervision.reference import (
    any_complete_query,
    hand_frame,
    obs_frames,
    ok_rows,
    random_obs,
    ref_variance_components,
)

HYP = settings(max_examples=80, deadline=None)


def _values(frame: pl.DataFrame) -> dict[str, float]:
    return dict(zip(frame["metric"], frame["value"], strict=True))


def test_hand_example_diagnostics_grid():
    out = diagnostics(hand_frame(), ["A", "B"], index="grid", n_boot=200)
    assert out.columns == list(METRIC_COLUMNS)
    assert out["metric"].to_list() == [
        "outcome_instability",
        "winner_flip_rate",
        "single_vs_da_disagreement",
        "input_variance",
        "output_variance",
        "input_share",
    ]
    values = _values(out)
    # q1/A and q1/B vary, both q2 cells are constant zero
    assert values["outcome_instability"] == 0.5
    # slot labels q1: A, A, B, A (flips); q2: all ties → A (no flip)
    assert values["winner_flip_rate"] == 0.5
    # DARS labels A, A: one slot of 8 disagrees
    assert values["single_vs_da_disagreement"] == 0.125
    # q1/A: rewrite means 1, 0.25 → between 0.140625; within (0 + 0.0625)/2 = 0.03125
    # q1/B: between 0, within 0.25; q2 cells 0 → means over 4 cells
    assert values["input_variance"] == pytest.approx(0.140625 / 4)
    assert values["output_variance"] == pytest.approx(0.28125 / 4)
    assert values["input_share"] == pytest.approx(1 / 3)
    assert out["n_queries"].to_list() == [2] * 6
    assert out["n_units"].to_list() == [4, 2, 8, 4, 4, 4]
    inst = out.row(0, named=True)
    # two queries with per-query shares 1 and 0 → resampled values are 0, 0.5 or 1
    assert 0.0 <= inst["ci_low"] <= 0.5 <= inst["ci_high"] <= 1.0


def test_hand_example_variance_components():
    comp = variance_components(hand_frame())
    row = comp.filter((pl.col("query_id") == "q1") & (pl.col("model") == "A")).row(0, named=True)
    assert row["input_var"] == pytest.approx(0.140625)
    assert row["output_var"] == pytest.approx(0.03125)
    assert row["total_var"] == pytest.approx(0.171875)


def test_draws_index_uses_single_shot_draws():
    frame = hand_frame()
    out = _values(diagnostics(frame, ["A", "B"], draws=40, seed=2, n_boot=50))
    shots = single_shot(frame, ["A", "B"], draws=40, seed=2)
    q1 = shots.labels.filter(pl.col("query_id") == "q1")
    assert out["winner_flip_rate"] == (0.5 if q1["label"].n_unique() > 1 else 0.0)
    expected = (shots.labels["label"] != "A").mean()
    assert out["single_vs_da_disagreement"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="index must be"):
        diagnostics(frame, ["A", "B"], index="slots")


def test_outcome_instability_ignores_single_observations_and_uses_tolerance():
    frame = hand_frame().with_columns(score=pl.col("score") + pl.col("decode_id") * 1e-12)
    assert _values(outcome_instability(frame, tol=0.0))["outcome_instability"] == 1.0
    assert _values(outcome_instability(frame))["outcome_instability"] == 0.5
    assert _values(outcome_instability(frame, tol=1e-9))["outcome_instability"] == 0.5
    single = hand_frame().filter((pl.col("rewrite_id") == 0) & (pl.col("decode_id") == 0))
    assert outcome_instability(single).height == 0


def test_dataset_results_do_not_depend_on_other_datasets():
    a = random_obs(1, n_queries=6, k=2, m=2)
    both = pl.concat([a, random_obs(2, n_queries=6, k=2, m=2).with_columns(dataset=pl.lit("zz"))])
    alone = diagnostics(a, ["a", "b", "c"], draws=10, n_boot=100)
    joint = diagnostics(both, ["a", "b", "c"], draws=10, n_boot=100).filter(
        pl.col("dataset") == "d0"
    )
    assert alone.equals(joint)


def test_bootstrap_matches_loop_reference():
    rng = np.random.default_rng(0)
    num = rng.integers(0, 5, size=17).astype(float)
    den = num + rng.integers(1, 4, size=17)
    value, lo, hi = bootstrap_ratio(num, den, n_boot=300, seed=[4, 5], ci=0.9)
    assert value == pytest.approx(num.sum() / den.sum())
    ref_rng = np.random.default_rng([4, 5])
    idx = ref_rng.integers(0, 17, size=(300, 17))
    stats = []
    for row in idx:
        stats.append(sum(num[i] for i in row) / sum(den[i] for i in row))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(stats, [0.05, 0.95])))


def test_bootstrap_edge_cases():
    assert bootstrap_ratio(np.ones(5), np.ones(5)) == (1.0, 1.0, 1.0)
    assert all(math.isnan(x) for x in bootstrap_ratio(np.zeros(3), np.zeros(3)))
    wide = bootstrap_ratio(np.array([0.0, 1.0] * 5), np.ones(10), seed=1)
    narrow = bootstrap_ratio(np.array([0.0, 1.0] * 500), np.ones(1000), seed=1)
    assert narrow[2] - narrow[1] < wide[2] - wide[1]
    with pytest.raises(ValueError, match="ci must be"):
        bootstrap_ratio(np.ones(2), np.ones(2), ci=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ratio(np.ones(2), np.ones(2), n_boot=0)
    assert dataset_seed(3, "gpqa") == dataset_seed(3, "gpqa") != dataset_seed(3, "math500")


def test_disagreement_requires_dars_labels_for_every_query():
    single = pl.DataFrame({"dataset": ["d"], "query_id": ["zz"], "label": ["A"]})
    dars = hard_labels(full_dars(hand_frame()), ["A", "B"])
    with pytest.raises(ValueError, match="no DARS label for dataset='d', query_id='zz'"):
        single_vs_da_disagreement(single, dars)


@HYP
@given(obs_frames(), st.sampled_from([0.0, 0.3]))
def test_instability_and_variance_match_reference(case, tol):
    frame, _ = case
    rows = ok_rows(frame)
    cells = defaultdict(list)
    for r in rows:
        cells[(r["dataset"], r["query_id"], r["model"])].append(r["score"])
    got = _values_by_ds(outcome_instability(frame, tol=tol, n_boot=20))
    for ds in {k[0] for k in cells}:
        multi = [v for k, v in cells.items() if k[0] == ds and len(v) > 1]
        if multi:
            want = sum(max(v) - min(v) > tol for v in multi) / len(multi)
            assert got[ds]["outcome_instability"] == pytest.approx(want)
        else:
            assert ds not in got
    comp = {
        (r["dataset"], r["query_id"], r["model"]): r for r in variance_components(frame).to_dicts()
    }
    ref = ref_variance_components(rows)
    assert comp.keys() == ref.keys()
    for key, (between, within, total) in ref.items():
        assert comp[key]["input_var"] == pytest.approx(between, abs=1e-12)
        assert comp[key]["output_var"] == pytest.approx(within, abs=1e-12)
        assert comp[key]["total_var"] == pytest.approx(total, abs=1e-12)
        assert between + within == pytest.approx(total, abs=1e-12)
    split = _values_by_ds(variance_split(frame, n_boot=20))
    for ds in split:
        vals = [v for k, v in ref.items() if k[0] == ds]
        assert split[ds]["input_variance"] == pytest.approx(np.mean([v[0] for v in vals]))
        assert split[ds]["output_variance"] == pytest.approx(np.mean([v[1] for v in vals]))
        denom = sum(v[0] + v[1] for v in vals)
        if denom > 0:
            assert split[ds]["input_share"] == pytest.approx(sum(v[0] for v in vals) / denom)
        else:
            assert math.isnan(split[ds]["input_share"])


@HYP
@given(obs_frames(allow_missing_cells=False), st.integers(0, 100))
def test_flip_and_disagreement_match_reference(case, seed):
    frame, models = case
    assume(any_complete_query(frame, models))
    shots = single_shot(frame, models, draws=5, seed=seed, missing="drop")
    dars = hard_labels(full_dars(frame), models, missing="drop")
    dars_label = {(r["dataset"], r["query_id"]): r["label"] for r in dars.to_dicts()}
    per_query = defaultdict(list)
    for r in shots.labels.to_dicts():
        per_query[(r["dataset"], r["query_id"])].append(r["label"])
    flips = _values_by_ds(winner_flip_rate(shots.labels, n_boot=20))
    disagree = _values_by_ds(single_vs_da_disagreement(shots.labels, dars, n_boot=20))
    for ds in {k[0] for k in per_query}:
        labels = {k: v for k, v in per_query.items() if k[0] == ds}
        want_flip = np.mean([len(set(v)) > 1 for v in labels.values()])
        assert flips[ds]["winner_flip_rate"] == pytest.approx(want_flip)
        n_diff = sum(lab != dars_label[k] for k, v in labels.items() for lab in v)
        want = n_diff / sum(len(v) for v in labels.values())
        assert disagree[ds]["single_vs_da_disagreement"] == pytest.approx(want)
    grid = slot_labels(frame, models)
    assert (
        winner_flip_rate(grid, n_boot=10)["n_units"].sum()
        <= grid.select("dataset", "query_id").n_unique()
    )


def _values_by_ds(frame: pl.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for r in frame.to_dicts():
        out[r["dataset"]][r["metric"]] = r["value"]
    return out
