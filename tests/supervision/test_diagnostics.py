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
    DEFINITIONS,
    DIAGNOSTICS_SCHEMA,
    METRIC_COLUMNS,
    bootstrap_ratio,
    diagnostics,
    diagnostics_table,
    full_dars,
    hard_labels,
    outcome_instability,
    single_shot,
    single_shot_diagnostics,
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
    paper_example,
    random_obs,
    ref_draws_diagnostics,
    ref_paper_diagnostics,
    ref_variance_components,
)

HYP = settings(max_examples=80, deadline=None)


def _values(frame: pl.DataFrame) -> dict[str, float]:
    return dict(zip(frame["metric"], frame["value"], strict=True))


# ------------------------------------------------------------------------------------------------
# the two definitions of winner flip and single-vs-DA disagreement
# ------------------------------------------------------------------------------------------------
def test_paper_and_draws_definitions_on_the_hand_built_matrix():
    frame = paper_example()
    # The paper's (Appendix C.5), by hand (see paper_example): slot winners q1 A A A A,
    # q2 A A B B, q3 A A A B → q2 and q3 flip; DA labels (no risk term) A, A, A → 0 + 2 + 1 of
    # 12 slots disagree.
    paper = _values(single_shot_diagnostics(frame, ["A", "B"], "paper", n_boot=50))
    assert paper == {"winner_flip_rate": 2 / 3, "single_vs_da_disagreement": 0.25}
    assert ref_paper_diagnostics(frame, ["A", "B"])["d"] == paper
    # The draws variant: 100 seeded draws make every query flip (q1 pairs A's 0 with B's 1 in
    # a quarter of the draws), and the DA label carries −βσ, which turns q3's label to B.
    draws = _values(
        single_shot_diagnostics(frame, ["A", "B"], "draws", draws=100, seed=0, n_boot=50)
    )
    shots = single_shot(frame, ["A", "B"], draws=100, seed=0)
    want = ref_draws_diagnostics(frame, shots.draws, ["A", "B"])["d"]
    assert draws == pytest.approx(want)
    assert draws["winner_flip_rate"] == 1.0
    # Expected shares of draws not labelled A, A, B: 1/4, 1/4, 3/4 → about 5/12.
    assert draws["single_vs_da_disagreement"] == pytest.approx(5 / 12, abs=0.05)
    assert hard_labels(full_dars(frame), ["A", "B"])["label"].to_list() == ["A", "A", "B"]
    assert hard_labels(full_dars(frame, beta=0.0), ["A", "B"])["label"].to_list() == ["A"] * 3


def test_paper_definition_leaves_out_slots_where_a_model_failed():
    # q2's B failed at slot (1, 1): that slot has no complete outcome, so q2 keeps three slots
    # (A A B, still a flip). q1's A failed everywhere but slot (0, 0): a single complete slot
    # cannot flip, so q1 leaves the winner flip but still counts for the disagreement, which
    # is 0 + 1 + 1 of 1 + 3 + 4 slots.
    frame = paper_example().with_columns(
        status=pl.when(
            (
                (pl.col("query_id") == "q2")
                & (pl.col("model") == "B")
                & (pl.col("decode_id") == 1)
                & (pl.col("rewrite_id") == 1)
            )
            | (
                (pl.col("query_id") == "q1")
                & (pl.col("model") == "A")
                & ((pl.col("rewrite_id") + pl.col("decode_id")) > 0)
            )
        )
        .then(pl.lit("error"))
        .otherwise(pl.col("status"))
    )
    out = single_shot_diagnostics(frame, ["A", "B"], "paper", n_boot=50)
    flip, disagree = out.row(0, named=True), out.row(1, named=True)
    assert (flip["value"], flip["n_queries"], flip["n_units"]) == (1.0, 2, 2)
    # q1: its one slot (0, 0) has A 1 vs B 1 − 0.05 → A; DA: μ_A = 1 beats μ_B − λ = 0.45.
    # q2: DA label A (0.5 vs 1/3 − 0.05), slots A A B → one disagreement.
    assert disagree["n_units"] == 1 + 3 + 4 and disagree["n_queries"] == 3
    assert disagree["value"] == pytest.approx(2 / 8)
    assert _values(out) == pytest.approx(ref_paper_diagnostics(frame, ["A", "B"])["d"])


def test_diagnostics_table_holds_both_definitions_default_first():
    frame = paper_example()
    for default in DEFINITIONS:
        table = diagnostics_table(frame, ["A", "B"], default=default, n_boot=50)
        other = next(d for d in DEFINITIONS if d != default)
        assert table.columns == list(DIAGNOSTICS_SCHEMA)
        assert table.select("metric", "definition").rows() == [
            ("outcome_instability", None),
            ("winner_flip_rate", default),
            ("winner_flip_rate", other),
            ("single_vs_da_disagreement", default),
            ("single_vs_da_disagreement", other),
            ("input_variance", None),
            ("output_variance", None),
            ("input_share", None),
        ]
        assert table.filter(~pl.col("is_default"))["definition"].to_list() == [other] * 2
        single = diagnostics(frame, ["A", "B"], definition=default, n_boot=50)
        assert table.filter("is_default").drop("definition", "is_default").equals(single)
    with pytest.raises(ValueError, match="unknown diagnostics definition 'slots'; valid: paper"):
        diagnostics_table(frame, ["A", "B"], default="slots")


def test_diagnostics_table_keeps_a_row_for_a_metric_without_units():
    # A fails on every decode 0 and B on every decode 1: no slot has both models, so the paper's
    # metrics have nothing to count — their rows stay, NaN with zero counts.
    frame = paper_example().filter(
        ((pl.col("model") == "A") & (pl.col("decode_id") == 1))
        | ((pl.col("model") == "B") & (pl.col("decode_id") == 0))
    )
    table = diagnostics_table(frame, ["A", "B"], n_boot=20)
    paper = table.filter(pl.col("definition") == "paper")
    assert paper.height == 2 and paper["value"].is_nan().all()
    assert paper["n_queries"].to_list() == [0, 0] and paper["n_units"].to_list() == [0, 0]
    assert not table.filter(pl.col("definition") == "draws")["value"].is_nan().any()


def test_hand_example_diagnostics_grid():
    out = diagnostics(hand_frame(), ["A", "B"], definition="paper", n_boot=200)
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
    # DA labels A, A (with or without the risk term): one slot of 8 disagrees
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


def test_draws_definition_uses_single_shot_draws():
    frame = hand_frame()
    out = _values(diagnostics(frame, ["A", "B"], definition="draws", draws=40, seed=2, n_boot=50))
    shots = single_shot(frame, ["A", "B"], draws=40, seed=2)
    q1 = shots.labels.filter(pl.col("query_id") == "q1")
    assert out["winner_flip_rate"] == (0.5 if q1["label"].n_unique() > 1 else 0.0)
    expected = (shots.labels["label"] != "A").mean()
    assert out["single_vs_da_disagreement"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown diagnostics definition 'grid'; valid: paper"):
        diagnostics(frame, ["A", "B"], definition="grid")


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


@HYP
@given(obs_frames())
def test_paper_definition_matches_reference(case):
    # Ragged grids, failed rows and missing cells: only complete slots count.
    frame, models = case
    assume(any_complete_query(frame, models))
    got = _values_by_ds(single_shot_diagnostics(frame, models, "paper", n_boot=10, missing="drop"))
    for ds, want in ref_paper_diagnostics(frame, models).items():
        assert got[ds]["single_vs_da_disagreement"] == pytest.approx(
            want["single_vs_da_disagreement"]
        )
        if math.isnan(want["winner_flip_rate"]):
            assert "winner_flip_rate" not in got[ds]  # no query has two complete slots
        else:
            assert got[ds]["winner_flip_rate"] == pytest.approx(want["winner_flip_rate"])


def _values_by_ds(frame: pl.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for r in frame.to_dicts():
        out[r["dataset"]][r["metric"]] = r["value"]
    return out
