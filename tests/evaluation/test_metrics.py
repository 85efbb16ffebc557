"""Hand-computed checks of the test-time metrics (dars.evaluation.metrics).

The worked example: one dataset ``d``, 3 test queries × 2 models. Model A always costs $0 and
model B $10, so with the frame's own bounds c_A = 0 and c_B = 1 (lam = 0.05: u_B = q_B - 0.05).

test_rewrite (2 rewrites per cell)     test_decode (2 decodes of the original per cell)
      A scores  q_A  B scores  q_B           A scores  q_A  B scores  q_B
q1    1, 0      0.5  1, 1      1.0     q1    0, 0      0.0  1, 1      1.0
q2    1, 1      1.0  1, 1      1.0     q2    1, 1      1.0  0, 1      0.5
q3    0, 0      0.0  1, 0      0.5     q3    1, 1      1.0  0, 0      0.0

plus one failed B generation costing $100 that must be ignored (also for the cost bounds).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from dars.evaluation.metrics import (
    ROUTE_SCORE_COLUMNS,
    VIEW_UTIL_COLUMNS,
    all_views_cost_bounds,
    bootstrap_ci,
    order_families,
    reference_rows,
    routed_cells,
    router_utilities,
    score_routes,
    summarise_single_shot,
    view_utilities,
)
from dars.supervision.core import cost_bounds
from tests.evaluation.hand_example import DS, routes, view_util

SCORES = {
    "test_rewrite": {
        ("q1", "A"): [1, 0],
        ("q1", "B"): [1, 1],
        ("q2", "A"): [1, 1],
        ("q2", "B"): [1, 1],
        ("q3", "A"): [0, 0],
        ("q3", "B"): [1, 0],
    },
    "test_decode": {
        ("q1", "A"): [0, 0],
        ("q1", "B"): [1, 1],
        ("q2", "A"): [1, 1],
        ("q2", "B"): [0, 1],
        ("q3", "A"): [1, 1],
        ("q3", "B"): [0, 0],
    },
}
COST = {"A": 0.0, "B": 10.0}


def _obs(drop: tuple[str, str, str] | None = None) -> pl.DataFrame:
    rows = []
    for view, cells in SCORES.items():
        for (qid, model), scores in cells.items():
            if drop == (view, qid, model):
                continue
            for j, s in enumerate(scores):
                rows.append(
                    {
                        "dataset": "d",
                        "split": "test",
                        "view": view,
                        "query_id": qid,
                        "model": model,
                        "rewrite_id": j if view == "test_rewrite" else -1,
                        "decode_id": 0 if view == "test_rewrite" else j,
                        "score": float(s),
                        "cost_usd": COST[model],
                        "status": "ok",
                    }
                )
    rows.append({**rows[0], "model": "B", "rewrite_id": 7, "score": 0.0, "cost_usd": 100.0})
    rows[-1]["status"] = "error"
    return pl.DataFrame(rows)


def _routes(choices: list[list[str]]) -> pl.DataFrame:
    """routes.parquet rows: draw s sends q1, q2, q3 to choices[s]."""
    rows = [
        {"draw": s, "query_id": f"q{i + 1}", "model": m, "model_index": "AB".index(m)}
        for s, picks in enumerate(choices)
        for i, m in enumerate(picks)
    ]
    return pl.DataFrame(rows, schema_overrides={"draw": pl.Int32, "model_index": pl.Int32})


def _u(vu: pl.DataFrame, view: str, qid: str, model: str) -> float:
    return vu.filter(view=view, query_id=qid, model=model)["u"].item()


def test_view_utilities_hand_example():
    vu = view_utilities(_obs())
    assert vu.columns == list(VIEW_UTIL_COLUMNS)
    assert vu.height == 12
    assert vu["n_obs"].to_list() == [2] * 12  # the failed generation is not counted
    row = vu.filter(view="test_rewrite", query_id="q1", model="B").row(0, named=True)
    assert row["q"] == 1.0 and row["c"] == 1.0 and row["u"] == pytest.approx(0.95)
    assert _u(vu, "test_rewrite", "q1", "A") == pytest.approx(0.5)
    assert _u(vu, "test_decode", "q3", "B") == pytest.approx(-0.05)
    assert _u(vu, "test_decode", "q2", "B") == pytest.approx(0.45)
    # Same result whatever the row order.
    shuffled = _obs().sample(fraction=1.0, shuffle=True, seed=3)
    assert view_utilities(shuffled).equals(vu)


def test_view_utilities_uses_given_cost_bounds():
    # Train observations cost up to $20, so B's $10 is c = 0.5 on the shared scale.
    train = pl.DataFrame(
        {
            "dataset": ["d", "d"],
            "query_id": ["t1", "t1"],
            "model": ["A", "B"],
            "rewrite_id": [-1, -1],
            "decode_id": [0, 0],
            "score": [1.0, 1.0],
            "cost_usd": [0.0, 20.0],
        }
    )
    vu = view_utilities(_obs(), cost_bounds=cost_bounds(train), lam=0.1)
    row = vu.filter(view="test_rewrite", query_id="q1", model="B").row(0, named=True)
    assert row["c"] == pytest.approx(0.5)
    assert row["u"] == pytest.approx(1.0 - 0.1 * 0.5)
    # The same scale from the whole store frame (train + both test views, one failed row).
    store = pl.concat(
        [_obs(), train.with_columns(split=pl.lit("train"), view=pl.lit("train"))],
        how="diagonal",
    ).with_columns(pl.col("status").fill_null("ok"))
    bounds = all_views_cost_bounds(store)
    assert bounds.rows() == [("d", 0.0, 20.0)]
    assert view_utilities(_obs(), cost_bounds=bounds, lam=0.1).equals(vu)


def test_view_utilities_rejects_train_view():
    obs = _obs().with_columns(view=pl.lit("train"))
    with pytest.raises(ValueError, match="train"):
        view_utilities(obs)


def test_router_utilities_hand_example():
    vu = view_utilities(_obs())
    # draw 0 = the rewrite-view oracle (B, A, B); draw 1 = always A; draw 2 = always B.
    routes = _routes([["B", "A", "B"], ["A", "A", "A"], ["B", "B", "B"]])
    ru = router_utilities(routes, vu)
    assert ru.columns == ["dataset", "view", "draw", "n_queries", "U", "Q", "C"]
    rew = ru.filter(view="test_rewrite").sort("draw")
    dec = ru.filter(view="test_decode").sort("draw")
    # U_rew: (0.95 + 1.0 + 0.45)/3, (0.5 + 1.0 + 0.0)/3, (0.95 + 0.95 + 0.45)/3
    assert rew["U"].to_list() == pytest.approx([0.8, 0.5, 2.35 / 3])
    # U_dec: (0.95 + 1.0 - 0.05)/3, (0 + 1 + 1)/3, (0.95 + 0.45 - 0.05)/3
    assert dec["U"].to_list() == pytest.approx([1.9 / 3, 2 / 3, 0.45])
    assert rew["Q"].to_list() == pytest.approx([2.5 / 3, 0.5, 2.5 / 3])
    assert rew["C"].to_list() == pytest.approx([2 / 3, 0.0, 1.0])
    assert ru["n_queries"].to_list() == [3] * 6
    # Per-query rows behind draw 0 in the rewrite view feed the bootstrap.
    cells = routed_cells(routes, vu).filter(view="test_rewrite", draw=0)
    assert cells["model"].to_list() == ["B", "A", "B"]
    assert cells["u"].to_list() == pytest.approx([0.95, 1.0, 0.45])
    lo, hi = bootstrap_ci(cells["u"].to_numpy(), n_boot=200, seed=0)
    assert 0.45 <= lo <= 0.8 <= hi <= 1.0


def test_router_utilities_keeps_extra_route_keys():
    vu = view_utilities(_obs())
    a = _routes([["A", "A", "A"]]).with_columns(family=pl.lit("knn"))
    b = _routes([["B", "B", "B"]]).with_columns(family=pl.lit("mlp"))
    ru = router_utilities(pl.concat([a, b]), vu, dataset="d")
    got = {(r["family"], r["view"]): r["U"] for r in ru.iter_rows(named=True)}
    assert got[("knn", "test_rewrite")] == pytest.approx(0.5)
    assert got[("mlp", "test_decode")] == pytest.approx(0.45)


def test_router_utilities_missing_cell_names_it():
    vu = view_utilities(_obs(drop=("test_decode", "q2", "B")))
    routes = _routes([["A", "B", "A"]])
    with pytest.raises(ValueError, match=r"view='test_decode', query_id='q2', model='B'"):
        router_utilities(routes, vu)


def test_router_utilities_rejects_unrouted_query_and_duplicates():
    vu = view_utilities(_obs())
    partial = _routes([["A", "A", "A"]]).filter(pl.col("query_id") != "q3")
    with pytest.raises(ValueError, match="'q3'"):
        router_utilities(partial, vu)
    doubled = pl.concat([_routes([["A", "A", "A"]]), _routes([["B", "A", "A"]]).head(1)])
    with pytest.raises(ValueError, match="more than once"):
        router_utilities(doubled, vu)


def test_reference_rows_hand_example():
    ref = reference_rows(view_utilities(_obs()))
    rew = ref.filter(view="test_rewrite").row(0, named=True)
    dec = ref.filter(view="test_decode").row(0, named=True)
    # Rewrite view: mean u of A = 0.5, of B = 2.35/3 → B is best.
    assert rew["best_model"] == "B"
    assert rew["best_U"] == pytest.approx(2.35 / 3)
    assert rew["best_Q"] == pytest.approx(2.5 / 3)
    assert rew["best_C"] == pytest.approx(1.0)
    # Oracle picks B, A, B: u = 0.95, 1.0, 0.45.
    assert rew["oracle_U"] == pytest.approx(0.8)
    assert rew["oracle_Q"] == pytest.approx(2.5 / 3)
    assert rew["oracle_C"] == pytest.approx(2 / 3)
    assert rew["random_U"] == pytest.approx(3.85 / 6)
    assert rew["random_C"] == pytest.approx(0.5)
    # Decode view: mean u of A = 2/3, of B = 1.35/3 → A is best; oracle B, A, A.
    assert dec["best_model"] == "A"
    assert dec["best_U"] == pytest.approx(2 / 3)
    assert dec["best_C"] == 0.0
    assert dec["oracle_U"] == pytest.approx(2.95 / 3)
    assert dec["oracle_Q"] == pytest.approx(1.0)
    assert dec["random_U"] == pytest.approx(3.35 / 6)
    assert (rew["n_queries"], rew["n_models"]) == (3, 2)


def test_reference_rows_missing_cell_names_it():
    vu = view_utilities(_obs(drop=("test_rewrite", "q3", "A")))
    with pytest.raises(ValueError, match=r"view='test_rewrite', query_id='q3', model='A'"):
        reference_rows(vu)


def test_summarise_single_shot_three_draws():
    vu = view_utilities(_obs())
    ru = router_utilities(_routes([["B", "A", "B"], ["A", "A", "A"], ["B", "B", "B"]]), vu)
    s = summarise_single_shot(ru)
    assert s.columns[:3] == ["dataset", "view", "n_draws"]
    rew = s.filter(view="test_rewrite").row(0, named=True)
    dec = s.filter(view="test_decode").row(0, named=True)
    # Rewrite draws 48/60, 30/60, 47/60: mean 25/36; deviations 19, -35, 16 (in 1/180).
    assert rew["n_draws"] == 3
    assert rew["U_mean"] == pytest.approx(25 / 36)
    assert rew["U_std"] == pytest.approx(math.sqrt((19**2 + 35**2 + 16**2) / 2) / 180)
    # Decode draws 38/60, 40/60, 27/60: mean 7/12; deviations 9, 15, -24 → std 21/180.
    assert dec["U_mean"] == pytest.approx(7 / 12)
    assert dec["U_std"] == pytest.approx(21 / 180)
    one = summarise_single_shot(ru.filter(draw=0))
    assert one["U_std"].to_list() == [0.0, 0.0]


def test_bootstrap_ci_contains_mean_and_is_seeded():
    x = np.random.default_rng(1).normal(0.6, 0.3, size=200)
    lo, hi = bootstrap_ci(x, n_boot=1000, seed=5)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x, n_boot=1000, seed=5)
    assert (lo, hi) != bootstrap_ci(x, n_boot=1000, seed=6)
    # Roughly ±1.96 standard errors.
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    narrow = bootstrap_ci(x, n_boot=1000, seed=5, ci=0.5)
    assert lo < narrow[0] < narrow[1] < hi
    assert bootstrap_ci([0.3, 0.3, 0.3], seed=0) == pytest.approx((0.3, 0.3))


def test_bootstrap_ci_validates():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="ci"):
        bootstrap_ci([1.0, 2.0], ci=1.5)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_score_routes_single_shot_and_router_rows():
    """One row per view: single-shot draws give mean ± std and no CI; a router gives its value
    and a bootstrap CI, the same draw_scores would give."""
    vu = view_util()
    single = score_routes(
        routes([("a", "b"), ("a", "a")]), vu, dataset=DS, single_shot=True, n_boot=10, seed=0
    )
    assert single.schema == pl.Schema(ROUTE_SCORE_COLUMNS)
    assert single["view"].to_list() == ["test_decode", "test_rewrite"]
    rew = single.row(1, named=True)
    assert rew["n_draws"] == 2 and rew["U"] == pytest.approx((0.975 + 0.5) / 2)
    assert rew["U_std"] == pytest.approx((0.975 - 0.5) / math.sqrt(2))
    assert rew["U_low"] is None and rew["U_high"] is None
    one = score_routes(routes([("a", "b")]), vu, dataset=DS, single_shot=False, n_boot=10, seed=0)
    rew = one.row(1, named=True)
    assert rew["n_draws"] == 1 and rew["U_std"] is None and rew["U"] == pytest.approx(0.975)
    assert (rew["U_low"], rew["U_high"]) == bootstrap_ci([1.0, 0.95], n_boot=10, seed=0)


def test_order_families_follows_the_paper_then_the_alphabet():
    assert order_families(["zeta", "mirt", "knn", "mlp", "alpha", "knn"]) == [
        "mlp",
        "knn",
        "mirt",
        "alpha",
        "zeta",
    ]


def test_complete_views_leaves_out_queries_a_model_never_answered():
    from dars.evaluation.metrics import complete_views

    rows = [
        ("d", "test_decode", "q1", "a"),
        ("d", "test_decode", "q1", "b"),
        ("d", "test_decode", "q2", "a"),  # b never answered q2 in this view
        ("d", "test_rewrite", "q2", "a"),
        ("d", "test_rewrite", "q2", "b"),
    ]
    vu = pl.DataFrame(rows, schema=["dataset", "view", "query_id", "model"], orient="row")
    vu = vu.with_columns(n_obs=pl.lit(1), q=pl.lit(1.0), c=pl.lit(0.0), u=pl.lit(1.0))
    kept, dropped = complete_views(vu, ["a", "b"])
    assert dropped == 1
    assert sorted(kept.select("view", "query_id").unique().rows()) == [
        ("test_decode", "q1"),
        ("test_rewrite", "q2"),
    ]
