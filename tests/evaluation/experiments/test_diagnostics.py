"""The diagnostics experiment (Fig 2, label recovery): its pure parts and compute on the hand
example of tests/evaluation/hand_example.py (its I/O is in tests/tasks/test_evaluate.py)."""

from __future__ import annotations

import polars as pl
import pytest

from dars.evaluation.experiments.base import ROUTES, VIEW_UTILITIES, MissingInputError
from dars.evaluation.experiments.diagnostics import (
    DIAGNOSTICS,
    RECOVERY,
    SPEC,
    single_shot_distribution,
    stack_supervision,
)
from tests.evaluation.hand_example import (
    DS,
    diagnostics_rows,
    experiment,
    recovery_rows,
    routes,
    view_util,
)


def test_single_shot_distribution_one_row_per_draw():
    vu = view_util()
    out = single_shot_distribution(
        {DS: vu},
        {(DS, "mirt"): routes([("a", "b"), ("a", "a")]), (DS, "knn"): routes([("b", "b")])},
    )
    assert out.columns == ["dataset", "view", "family", "draw", "U", "Q", "C"]
    assert out.height == 2 * (2 + 1)
    mirt = out.filter(family="mirt", view="test_rewrite").sort("draw")
    assert mirt["U"].to_list() == pytest.approx([0.975, 0.5])
    assert mirt["Q"].to_list() == pytest.approx([1.0, 0.5])
    assert mirt["C"].to_list() == pytest.approx([0.5, 0.0])
    knn = out.filter(family="knn", view="test_decode")
    assert knn["U"].to_list() == pytest.approx([0.7])
    with pytest.raises(ValueError, match="no view utilities"):
        single_shot_distribution({}, {(DS, "mirt"): routes([("a", "b")])})


def test_stack_supervision_checks_columns():
    frame = pl.DataFrame({"dataset": ["d"], "metric": ["m"]})
    with pytest.raises(ValueError, match="diagnostics table of dataset 'd' lacks.*value"):
        stack_supervision([frame], {"dataset": pl.String, "value": pl.Float64}, "diagnostics")
    empty = stack_supervision([], {"dataset": pl.String}, "x")
    assert empty.height == 0 and empty.schema == pl.Schema({"dataset": pl.String})


def _inputs(recovery: dict, trained: dict) -> dict:
    return {
        DIAGNOSTICS: {DS: diagnostics_rows(DS, 0.7)},
        RECOVERY: recovery,
        VIEW_UTILITIES: {DS: view_util()},
        ROUTES: {(DS, f, m): routes(d) for (f, m), d in trained.items()},
    }


def test_compute_stacks_and_leaves_recovery_out_when_no_dataset_has_it():
    trained = {("mirt", "single_shot"): [("a", "b"), ("a", "a")], ("mirt", "dars"): [("a", "b")]}
    out = SPEC.compute(_inputs({}, trained), experiment())
    assert set(out) == {"diagnostics", "single_shot_distribution"}
    assert out["diagnostics"]["value"].to_list() == pytest.approx([0.7, 0.35])
    for name, frame in out.items():
        assert frame.schema == pl.Schema(SPEC.tables[name]), name
    # Only single-shot routes enter the distribution: 2 draws × 2 views.
    assert out["single_shot_distribution"].height == 4
    [view] = SPEC.view(out)
    assert view.frame.columns == ["metric", DS] and view.frame.height == 2


def test_compute_writes_recovery_with_its_datasets():
    rec = recovery_rows(DS)
    trained = {("knn", "single_shot"): [("b", "b")]}
    frame, extras = SPEC.compute(_inputs({DS: rec}, trained), experiment())["recovery"]
    assert frame.equals(rec) and extras == {"datasets": [DS]}


def test_compute_names_missing_single_shot_routes():
    with pytest.raises(
        MissingInputError, match="single-shot routes.*'demo_mc'.*--supervision single_shot"
    ):
        SPEC.compute(_inputs({}, {("mirt", "dars"): [("a", "b")]}), experiment())
