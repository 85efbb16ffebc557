"""The experiment spec, its input vocabulary and the registry (dars.evaluation.experiments.base),
and what the report checks of a spec's section."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest
from matplotlib.figure import Figure

from dars.evaluation.experiments.base import (
    EXPERIMENTS,
    ROUTES,
    Input,
    MissingInputError,
    StaleInputError,
    experiments,
    supervision,
    table_producers,
)
from dars.evaluation.report import build_report, section_titles
from tests.evaluation.sample_results import make_results
from tests.evaluation.toy import registered, toy_spec


def test_inputs_are_checked_against_the_vocabulary():
    assert str(supervision("recovery", optional=True)) == "supervision:recovery (optional)"
    assert supervision("dars") == Input("supervision", table="dars")  # a hashable key
    with pytest.raises(ValueError, match="unknown input kind 'nope'; valid: view_utilities"):
        Input("nope")
    with pytest.raises(ValueError, match="names a table if and only if"):
        Input("supervision")
    with pytest.raises(ValueError, match="names a table if and only if"):
        Input("routes", table="dars")
    with pytest.raises(ValueError, match="'routes' cannot be optional"):
        Input("routes", optional=True)


def test_input_errors_are_the_usual_exception_types():
    missing = MissingInputError("no routes", [(ROUTES, ("d", "knn", "dars"))])
    assert isinstance(missing, FileNotFoundError) and str(missing) == "no routes"
    assert missing.where == ((ROUTES, ("d", "knn", "dars")),)
    assert isinstance(StaleInputError("old grid"), ValueError)


def test_specs_are_validated_when_built():
    toy = toy_spec()
    with pytest.raises(ValueError, match="experiment name 'Bad-Name' must match"):
        dataclasses.replace(toy, name="Bad-Name")
    with pytest.raises(ValueError, match="help must be one non-empty line"):
        dataclasses.replace(toy, help="two\nlines")
    with pytest.raises(ValueError, match="declares no table"):
        dataclasses.replace(toy, tables={})
    with pytest.raises(ValueError, match=r"table name\(s\) \['Bad'\]"):
        dataclasses.replace(toy, tables={"Bad": {}})
    with pytest.raises(TypeError, match="inputs must be Input objects"):
        dataclasses.replace(toy, inputs=("routes",))
    with pytest.raises(TypeError, match="compute must be callable"):
        dataclasses.replace(toy, compute=None)


def test_the_built_in_experiments_in_report_order():
    names = [s.name for s in experiments()]
    assert names == [
        "main", "ablation", "diagnostics", "sample_efficiency", "pareto", "beta", "validity"
    ]  # fmt: skip
    assert list(table_producers()) == [
        "main", "dars_gain", "ablation", "diagnostics", "single_shot_distribution",
        "recovery", "sample_efficiency", "pareto", "pareto_budget", "beta", "rewrite_validity",
        "scoring_validity",
    ]  # fmt: skip
    assert table_producers()["recovery"] == "diagnostics"
    assert all("\n" not in s.help for s in experiments())


def test_a_name_or_a_table_belongs_to_one_experiment():
    with registered(toy_spec()):
        with pytest.raises(ValueError, match="experiment 'toy' is already registered"):
            EXPERIMENTS.add("toy", toy_spec())
        assert section_titles()[-2] == "9. Toy counts"
    with registered(toy_spec("toy_two"), dataclasses.replace(toy_spec(), tables={"beta": {}})):
        with pytest.raises(ValueError, match="table 'beta' is declared by experiments 'beta' and"):
            table_producers()
    assert "toy" not in EXPERIMENTS.names()


def test_a_section_draws_only_the_figures_its_spec_declares():
    def stray(doc, run):
        doc.figure("fig_not_declared", Figure(figsize=(1, 1)), "x")

    counts = pl.DataFrame({"dataset": ["d"], "model": ["m"], "n_ok": [1], "score": [1.0]})
    results = {"main": make_results()["main"], "toy_counts": counts}
    with registered(dataclasses.replace(toy_spec(), section=stray)):
        with pytest.raises(ValueError, match="'toy' drew figure 'fig_not_declared'.*toy_counts"):
            build_report(results, {}, root="r", written_at="now")
    with registered(toy_spec()):
        doc = build_report(results, {}, root="r", written_at="now")
    assert [f.name for f in doc.figures] == ["toy_counts"]
