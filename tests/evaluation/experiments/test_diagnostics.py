"""The diagnostics experiment (Fig 2, label recovery): its pure parts and compute on the hand
example of tests/evaluation/hand_example.py (its I/O is in tests/tasks/test_evaluate.py)."""

from __future__ import annotations

import polars as pl
import pytest

from dars.evaluation.experiments.base import (
    ROUTES,
    VIEW_UTILITIES,
    MissingInputError,
    StaleInputError,
)
from dars.evaluation.experiments.diagnostics import (
    DIAGNOSTICS,
    DIAGNOSTICS_COLUMNS,
    RECOVERY,
    SPEC,
    default_definition,
    diagnostics_table,
    single_shot_distribution,
    stack_supervision,
    with_definitions,
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
    assert out["diagnostics"]["value"].to_list() == pytest.approx([0.7, 0.35, 0.45])
    assert out["diagnostics"]["definition"].to_list() == [None, "paper", "draws"]
    for name, frame in out.items():
        assert frame.schema == pl.Schema(SPEC.tables[name]), name
    # Only single-shot routes enter the distribution: 2 draws × 2 views.
    assert out["single_shot_distribution"].height == 4
    [view] = SPEC.view(out)
    assert view.frame.columns == ["metric", "definition", DS]
    assert view.frame.select("metric", "definition").rows() == [
        ("outcome_instability", "—"),
        ("winner_flip_rate", "paper (default)"),
        ("winner_flip_rate", "draws"),
    ]
    assert view.frame[DS].to_list() == pytest.approx([0.7, 0.35, 0.45])


def test_compute_names_a_diagnostics_table_without_definitions():
    old = diagnostics_rows(DS, 0.7).filter("is_default").drop("definition", "is_default")
    inputs = {**_inputs({}, {("mirt", "single_shot"): [("a", "b")]}), DIAGNOSTICS: {DS: old}}
    with pytest.raises(StaleInputError, match="'demo_mc'.*no `definition` column.*dars supervise"):
        SPEC.compute(inputs, experiment())


def test_diagnostics_table_puts_definitions_side_by_side_with_the_papers_values():
    diag = pl.concat(
        [
            diagnostics_rows(DS, 0.7),
            diagnostics_rows(DS, 0.7)
            .filter(pl.col("metric") == "winner_flip_rate")
            .with_columns(metric=pl.lit("single_vs_da_disagreement")),
        ]
    )
    table = diagnostics_table(diag, {DS: "gpqa"})
    assert table.columns == [
        "dataset", "metric", "definition", "value", "95% CI", "n_queries", "n_units", "paper"
    ]  # fmt: skip
    assert table.select("metric", "definition", "value", "paper").rows() == [
        ("outcome_instability", "—", "0.700", "0.715 (gpqa)"),
        ("winner_flip_rate", "paper (default)", "0.350", "0.970 (gpqa)"),
        # The paper's number measures its own definition: not shown beside the other one.
        ("winner_flip_rate", "draws", "0.450", "—"),
        ("single_vs_da_disagreement", "paper (default)", "0.350", "—"),
        ("single_vs_da_disagreement", "draws", "0.450", "—"),
    ]
    as_draws = diag.with_columns(
        is_default=pl.col("definition").is_null() | (pl.col("definition") == "draws")
    )
    assert default_definition(as_draws) == "draws"
    labels = diagnostics_table(as_draws, {DS: None})["definition"].to_list()
    assert labels == ["—", "paper", "draws (default)", "paper", "draws (default)"]


def test_a_result_of_an_older_version_reads_as_the_draws_definition():
    old = diagnostics_rows(DS, 0.7).filter("is_default").drop("definition", "is_default")
    upgraded, was_old = with_definitions(old)
    assert was_old and upgraded.columns == list(DIAGNOSTICS_COLUMNS)
    assert upgraded.select("definition", "is_default").rows() == [(None, True), ("draws", True)]
    same, was_old = with_definitions(diagnostics_rows(DS, 0.7))
    assert not was_old and same.equals(diagnostics_rows(DS, 0.7))


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
