"""The β experiment (the paper's Fig 4c): DARS routers routing at each risk weight β.

The ``dars`` supervision table's router routes the test queries at (λ, β) for every β of
``exp.evaluation.beta_grid``. Families that fold β into their training targets (embedllm,
rm_softmax: :func:`~dars.routers.training.folds_beta`) are refitted per β; the others are
fitted once and their predicted utility q − λc − βσ is re-weighted per β. Routers are fitted in
memory; nothing is written under ``models/``.

Result ``beta``: one row per (dataset, family, β, view) with U, its bootstrap CI, Q and C
(:func:`~dars.evaluation.refit.score_route_sets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from sklearn.base import clone

from dars.evaluation import plots
from dars.evaluation.document import Document, ReportRun, by_family_table, ci_width_text
from dars.evaluation.experiments.base import (
    EMBEDDINGS,
    VIEW_UTILITIES,
    ExperimentSpec,
    Inputs,
    View,
    register_experiment,
    supervision,
)
from dars.evaluation.refit import (
    SweepData,
    check_sweep_families,
    score_route_sets,
    select_schema,
    sweep_inputs,
    sweep_prototypes,
)
from dars.routers import Router
from dars.routers.training import folds_beta, training_targets

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = ["BETA_COLUMNS", "SPEC", "beta_sweep", "beta_table"]

#: Schema of the ``beta`` result.
BETA_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "beta": pl.Float64,
    "U": pl.Float64,
    "U_low": pl.Float64,
    "U_high": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
}
DARS = supervision("dars")


def beta_sweep(
    dars: pl.DataFrame,
    data: SweepData,
    prototypes: Mapping[str, Router],
    *,
    betas: Sequence[float],
    lam: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Test utility of DARS-trained routers routing at each β (fits in memory).

    ``dars``: the dataset's ``dars`` supervision (one row per (query_id, model) with ``q_mean,
    c_mean, q_std``). ``prototypes``: family name → unfitted router. A family that folds β into
    training (:func:`folds_beta`) is refitted with ``beta=β`` for each β; any other is fitted
    once and routes ``data.test_ids`` at (``lam``, β) for each β.

    One row per (family, β, view), ordered so (family in ``prototypes`` order, β as given,
    view): columns :data:`BETA_COLUMNS`, values as in
    :func:`~dars.evaluation.refit.score_route_sets`.
    """
    betas = [float(b) for b in betas]
    if not betas:
        raise ValueError("beta grid is empty")
    rows, targets = training_targets(dars, "dars", data.train_ids, data.models)
    X = data.X_train[rows]
    parts = []
    for family, proto in prototypes.items():
        if folds_beta(proto):
            fitted = [clone(proto).set_params(beta=b).fit(X, targets) for b in betas]
            routes = np.stack(
                [r.route(data.X_test, lam, b) for r, b in zip(fitted, betas, strict=True)]
            )
        else:
            router = clone(proto).fit(X, targets)
            routes = np.stack([router.route(data.X_test, lam, b) for b in betas])
        keys = pl.DataFrame(
            {"family": [family] * len(betas), "beta": betas},
            schema={"family": pl.String, "beta": pl.Float64},
        )
        parts.append(
            score_route_sets(
                routes,
                data.test_ids,
                data.models,
                data.view_util,
                dataset=data.dataset,
                keys=keys,
                n_boot=n_boot,
                seed=seed,
            )
        )
    return select_schema(parts, BETA_COLUMNS)


def compute(inputs: Inputs, exp: Experiment) -> dict[str, pl.DataFrame]:
    """:func:`beta_sweep` of every benchmark (in config order) with the sweep families over
    ``exp.evaluation.beta_grid`` at ``exp.lam``."""
    prototypes = sweep_prototypes(exp)
    parts = [
        beta_sweep(
            dars,
            data,
            prototypes,
            betas=exp.evaluation.beta_grid,
            lam=exp.lam,
            n_boot=exp.evaluation.n_boot,
            seed=exp.seed,
        )
        for dars, data in sweep_inputs(inputs, exp, DARS)
    ]
    return {"beta": select_schema(parts, BETA_COLUMNS)}


def beta_table(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Fig 4c's numbers for one dataset: one row per (family, view), one column per training β,
    cells the test utility U of the DARS router trained with that β."""
    return by_family_table(frame, dataset, ("beta",), lambda k: f"β={k[0]:g}")


def section(doc: Document, run: ReportRun) -> None:
    """Fig 4c and its numbers per dataset."""
    beta = run.result(doc, "beta")
    if beta is None:
        return
    default = (run.context or {}).get("beta")
    doc.p("DARS routers trained with each risk weight β of the sweep (labels u = μ − λc̄ − βσ).")
    doc.figure(
        "fig4c_beta",
        plots.beta_curves(beta, default_beta=default, datasets=run.datasets),
        f"Fig 4c: test utility against β; dotted: the run's β; {ci_width_text(beta)}",
    )
    for d in [d for d in run.datasets if d in set(beta["dataset"].to_list())]:
        doc.h(3, f"β sensitivity — {d} (U)")
        doc.table(beta_table(beta, d))


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    """U per (dataset, view, family), one column per β."""
    frame = tables["beta"]
    if frame.height:
        frame = frame.pivot(
            on="beta", index=["dataset", "view", "family"], values="U", sort_columns=False
        )
    return [View("beta", frame)]


SPEC = register_experiment(
    ExperimentSpec(
        name="beta",
        help="β sweep of DARS routers (Fig 4c) → results/beta.",
        title="β sensitivity",
        order=60,
        inputs=(DARS, VIEW_UTILITIES, EMBEDDINGS),
        compute=compute,
        tables={"beta": BETA_COLUMNS},
        section=section,
        view=view,
        figures=("fig4c_beta",),
        check=check_sweep_families,
    )
)
