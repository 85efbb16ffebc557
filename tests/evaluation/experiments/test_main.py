"""The main experiment (Tables 1 and 4) on the hand example of tests/evaluation/hand_example.py:

view utilities u (λ = 0.05)     rewrite view        decode view
                                 a       b           a       b
q1                               1.0    -0.05        0.5     0.95
q2                               0.0     0.95        0.0     0.45

best fixed: a (U 0.5) on rewrite, b (U 0.7) on decode; oracle 0.975 / 0.7; random 0.475 / 0.475.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from dars.config import Evaluation
from dars.evaluation.experiments.base import ROUTES, VIEW_UTILITIES
from dars.evaluation.experiments.main import MAIN_COLUMNS, SPEC, main_detail_table
from tests.evaluation.hand_example import DS, U, experiment, routes, view_util


def _main() -> pl.DataFrame:
    inputs = {
        VIEW_UTILITIES: {DS: view_util()},
        ROUTES: {
            (DS, "knn", "dars"): routes([("a", "b")]),
            (DS, "mirt", "single_shot"): routes([("a", "b"), ("a", "a")]),
        },
    }
    exp = experiment().model_copy(update={"evaluation": Evaluation(n_boot=50)})
    return SPEC.compute(inputs, exp)["main"]


def test_main_rows_references_then_routers_in_input_order():
    main = _main()
    assert main.schema == pl.Schema(MAIN_COLUMNS)
    assert main.select("family", "supervision", "view").rows() == [
        ("best_fixed", "best_fixed", "test_decode"),
        ("oracle", "oracle", "test_decode"),
        ("random", "random", "test_decode"),
        ("best_fixed", "best_fixed", "test_rewrite"),
        ("oracle", "oracle", "test_rewrite"),
        ("random", "random", "test_rewrite"),
        ("knn", "dars", "test_decode"),
        ("knn", "dars", "test_rewrite"),
        ("mirt", "single_shot", "test_decode"),
        ("mirt", "single_shot", "test_rewrite"),
    ]
    u = {(r["family"], r["view"]): r for r in main.iter_rows(named=True)}
    assert u[("best_fixed", "test_rewrite")]["best_model"] == "a"
    assert u[("best_fixed", "test_decode")]["best_model"] == "b"
    assert u[("best_fixed", "test_rewrite")]["U"] == pytest.approx(0.5)
    assert u[("best_fixed", "test_decode")]["U"] == pytest.approx(0.7)
    assert u[("oracle", "test_rewrite")]["U"] == pytest.approx(0.975)
    assert u[("oracle", "test_decode")]["U"] == pytest.approx(0.7)
    assert u[("random", "test_rewrite")]["U"] == pytest.approx(0.475)
    knn = u[("knn", "test_rewrite")]
    assert knn["U"] == pytest.approx(U[("a", "b")][0]) and knn["n_draws"] == 1
    assert knn["U_low"] <= knn["U"] <= knn["U_high"] and knn["U_std"] is None
    ss = u[("mirt", "test_decode")]
    assert ss["n_draws"] == 2 and ss["U_low"] is None
    assert ss["U"] == pytest.approx((0.475 + 0.25) / 2)
    assert ss["U_std"] == pytest.approx((0.475 - 0.25) / math.sqrt(2))


def test_view_is_table_1_with_means_only_and_two_line_headers():
    [view] = SPEC.view({"main": _main()})
    frame = view.frame
    assert frame.columns == ["family", "labels", "demo\nmc\nrew", "demo\nmc\ndec"]
    rows = {(r[0], r[1]): r[2:] for r in frame.rows()}
    assert rows[("knn", "DARS")] == ("0.975", "0.475")
    assert rows[("mirt", "1-shot")] == ("0.738", "0.362")  # no "± std" in the terminal
    assert rows[("best fixed", "—")] == ("0.500", "0.700")
    assert "1-shot: mean over the single-shot draws" in view.title


def test_table_4_shows_spread_quality_cost_and_best_models():
    detail = main_detail_table(_main(), DS)
    rows = {r["family"]: r for r in detail.iter_rows(named=True)}
    assert rows["best fixed"]["supervision"] == "rew: a, dec: b"
    assert rows["knn"]["rew ± std / 95% CI"].startswith("[")
    assert rows["mirt"]["rew ± std / 95% CI"] == "± 0.336"
    assert rows["oracle"]["dec U"] == "0.700"
