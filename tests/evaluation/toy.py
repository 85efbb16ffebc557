"""A toy experiment, registered at test time: proof that a new experiment is one module.

:func:`toy_spec` is everything such a module holds — one input (the observation store), a pure
compute (ok observations and mean score per (dataset, model)), one table, a report section with
a table and a figure, and a terminal view. :func:`registered` adds specs to the experiment
registry for one test and takes them out again (plug-ins live as long as the process; a test
must not leave its toy in the report of the next one).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
from matplotlib.figure import Figure

from dars.evaluation.document import Document, ReportRun, fmt, text_table
from dars.evaluation.experiments.base import (
    EXPERIMENTS,
    OBSERVATIONS,
    ExperimentSpec,
    View,
    register_experiment,
)

TOY_COLUMNS = {"dataset": pl.String, "model": pl.String, "n_ok": pl.Int64, "score": pl.Float64}


def _compute(inputs, exp) -> dict[str, pl.DataFrame]:
    obs = inputs[OBSERVATIONS].filter(pl.col("status") == "ok")
    counts = (
        obs.group_by("dataset", "model")
        .agg(pl.len().cast(pl.Int64).alias("n_ok"), pl.col("score").mean())
        .sort("dataset", "model")
    )
    return {"toy_counts": counts}


def _section(doc: Document, run: ReportRun) -> None:
    counts = run.result(doc, "toy_counts")
    if counts is None:
        return
    doc.p("Ok observations per model (a toy experiment).")
    rows = [
        {"model": r["model"], "n_ok": fmt(r["n_ok"]), "score": fmt(r["score"])}
        for r in counts.iter_rows(named=True)
    ]
    doc.table(text_table(rows, ["model", "n_ok", "score"]))
    fig = Figure(figsize=(3, 2))
    fig.subplots().bar(counts["model"].to_list(), counts["n_ok"].to_list())
    doc.figure("toy_counts", fig, "Toy: ok observations per model.")


def _view(tables) -> list[View]:
    return [View("toy: ok observations", tables["toy_counts"])]


def toy_spec(name: str = "toy") -> ExperimentSpec:
    return ExperimentSpec(
        name=name,
        help="Ok observations per model (a toy) → results/toy_counts.",
        title="Toy counts",
        order=1000,
        inputs=(OBSERVATIONS,),
        compute=_compute,
        tables={"toy_counts": TOY_COLUMNS},
        section=_section,
        view=_view,
        figures=("toy_counts",),
    )


@contextmanager
def registered(*specs: ExperimentSpec) -> Iterator[None]:
    """``specs`` registered for the duration of the block."""
    with EXPERIMENTS.scratch():
        for spec in specs:
            register_experiment(spec)
        yield
