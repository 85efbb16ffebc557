"""Figures of the report: what each draws, read back from the matplotlib objects."""

from __future__ import annotations

import numpy as np
import polars as pl

from dars.evaluation import plots
from tests.evaluation.sample_results import make_results


def test_fig4a_draws_the_mean_over_families_in_a_min_max_band() -> None:
    frame = make_results()["sample_efficiency"]
    fig = plots.sample_efficiency_curves(frame)
    ax = fig.axes[0]
    dataset, view = ax.get_title().split(" — ")
    sub = frame.filter(pl.col("dataset") == dataset)
    protocols = sub.select("n_obs", "k", "m").unique().sort("n_obs", "k", "m").rows()
    want = [
        sub.filter(
            pl.col("view").is_in([v for v in plots.VIEW_LABELS if plots.VIEW_LABELS[v] == view])
            & (pl.col("k") == k)
            & (pl.col("m") == m)
        )["U"].mean()
        for _, k, m in protocols
    ]
    (mean_line,) = [ln for ln in ax.get_lines() if ln.get_color() == "black"]
    np.testing.assert_allclose(mean_line.get_ydata(), want)
    assert len(ax.collections) == 1  # the min–max band
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "mean over families" in labels and "min–max over families" in labels


def test_fig4b_names_fixed_models_in_the_legend_not_beside_the_points() -> None:
    pareto = make_results()["pareto"]
    dataset = pareto["dataset"][0]
    fig = plots.pareto_frontiers(pareto, dataset)
    assert all(not ax.texts for ax in fig.axes)  # no labels to overlap
    models = pareto.filter((pl.col("dataset") == dataset) & (pl.col("family") == "fixed"))
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert set(models["model"].to_list()) <= labels
