"""The Pareto experiment (the paper's Fig 4b): cost–quality frontiers over a λ sweep.

A router trained at one λ ranks models by u = q − λc − βσ; routing the same fitted router at
other λ traces how much quality it buys for how much cost. The train stage writes those routes
(``lam_routes.parquet``, one per (dataset, family, supervision) for the single_shot and dars
supervisions, at every λ of ``exp.evaluation.lam_grid``), so no refit happens here.

* :func:`pareto_points` — one row per (dataset, view, family, supervision, lam): mean test
  quality Q and normalised cost C of the routes, plus one point per fixed model (result ``pareto``);
* :func:`budget_frontier` — the best quality each (family, supervision) reaches under a mean cost
  budget (result ``pareto_budget``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dars.evaluation import plots
from dars.evaluation.document import DASH, Document, ReportRun, fmt, text_table
from dars.evaluation.experiments.base import (
    LAM_ROUTES,
    ROUTES,
    VIEW_UTILITIES,
    ExperimentSpec,
    Inputs,
    MissingInputError,
    StaleInputError,
    View,
    register_experiment,
)
from dars.evaluation.metrics import VIEW_SHORT, VIEW_UTIL_COLUMNS, order_families, router_utilities
from dars.evaluation.refit import check_sweep_families, sweep_families
from dars.routers.training import LAM_SWEEP_SUPERVISIONS
from dars.utility import utility_expr

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = [
    "BUDGET_COLUMNS",
    "BUDGET_TOL",
    "FIXED",
    "PARETO_COLUMNS",
    "SPEC",
    "budget_frontier",
    "budget_table",
    "pareto_points",
]

#: family and supervision of the fixed-model points.
FIXED = "fixed"

#: Columns of result ``pareto`` (see :func:`pareto_points`).
PARETO_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "supervision": pl.String,
    "lam": pl.Float64,
    "model": pl.String,
    "n_draws": pl.Int64,
    "U": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
    "Q_std": pl.Float64,
    "C_std": pl.Float64,
}

#: Slack of the budget test C <= B: a mean of costs carries float rounding (three queries at
#: cost 0.2 average to 0.20000000000000004), which must not push a point out of budget 0.2.
BUDGET_TOL = 1e-9

#: Columns of result ``pareto_budget`` (see :func:`budget_frontier`).
BUDGET_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "supervision": pl.String,
    "budget": pl.Float64,
    "lam": pl.Float64,
    "model": pl.String,
    "Q": pl.Float64,
    "C": pl.Float64,
}

_KEYS = ["dataset", "view", "family", "supervision"]
_ROUTE_COLUMNS = ("dataset", "family", "supervision", "lam", "draw", "query_id", "model")


def _require(frame: pl.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {frame.columns}")


def _fixed_points(view_util: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, view, model): Q, C of sending every test query of the view to
    that model. A model missing a query of the view raises (its mean would be over an easier
    set of queries)."""
    n_queries = view_util.group_by("dataset", "view").agg(pl.col("query_id").n_unique().alias("_n"))
    per_model = (
        view_util.group_by("dataset", "view", "model")
        .agg(pl.len().alias("_k"), Q=pl.col("q").mean(), C=pl.col("c").mean())
        .join(n_queries, on=["dataset", "view"])
    )
    holes = per_model.filter(pl.col("_k") != pl.col("_n"))
    if holes.height:
        r = holes.sort("dataset", "view", "model").row(0, named=True)
        raise ValueError(
            f"view_util: model {r['model']!r} has {r['_k']} of the {r['_n']} test queries of "
            f"(dataset={r['dataset']!r}, view={r['view']!r}); a fixed-model point needs them all"
        )
    return per_model.select(
        "dataset",
        "view",
        pl.lit(FIXED).alias("family"),
        pl.lit(FIXED).alias("supervision"),
        pl.lit(None, pl.Float64).alias("lam"),
        pl.col("model").cast(pl.String),
        pl.lit(1, pl.Int64).alias("n_draws"),
        pl.lit(None, pl.Float64).alias("U"),
        pl.col("Q").cast(pl.Float64),
        pl.col("C").cast(pl.Float64),
        pl.lit(None, pl.Float64).alias("Q_std"),
        pl.lit(None, pl.Float64).alias("C_std"),
    )


def pareto_points(lam_routes: pl.DataFrame, view_util: pl.DataFrame) -> pl.DataFrame:
    """Cost–quality points of routers over a λ sweep and of every fixed model.

    ``lam_routes``: rows of ``lam_routes.parquet`` files stacked with the columns ``dataset``,
    ``family`` and ``supervision`` (``single_shot`` or ``dars``) added — one row per (dataset,
    family, supervision, lam, draw, query_id) with the routed ``model`` (``model_index`` is
    ignored). ``view_util``: :func:`~dars.evaluation.metrics.view_utilities` rows (at any λ: only
    the λ-free ``q`` and ``c`` are used).

    Returns :data:`PARETO_COLUMNS`, sorted by (dataset, view, family, supervision, lam):

    * one row per (dataset, view, family, supervision, lam) of the routes: per draw, Q and C are
      the means over the view's test queries of the routed model's ``q`` and normalised cost ``c``,
      and U = Q − lam·C (the mean test utility at that λ); the row holds the mean over the
      ``n_draws`` draws. ``Q_std``/``C_std``: sample std over the draws (ddof = 1; 0 for one
      draw) for ``single_shot``, null for ``dars`` (one router, which must have one draw);
      ``model`` is null;
    * one row per (dataset, view, model) for the datasets of ``lam_routes``: family = supervision =
      ``"fixed"``, ``model`` its name, ``lam``, ``U`` and the stds null, ``n_draws`` 1, Q and C of
      sending every test query of the view to that model.

    Raises ``ValueError`` for a missing column, an unknown supervision, a
    null/negative/non-finite λ, a ``dars`` router with several draws, and everything
    :func:`~dars.evaluation.metrics.router_utilities` rejects (a query routed twice or not at
    all in some (lam, draw), a routed cell without test observations).
    """
    _require(lam_routes, _ROUTE_COLUMNS, "lam_routes")
    _require(view_util, VIEW_UTIL_COLUMNS, "view_util")
    if lam_routes.height == 0:
        raise ValueError("lam_routes is empty")
    supervisions = sorted(lam_routes["supervision"].unique().to_list(), key=str)
    bad = [s for s in supervisions if s not in LAM_SWEEP_SUPERVISIONS]
    if bad:
        raise ValueError(
            f"lam_routes has supervision(s) {bad}; expected only {list(LAM_SWEEP_SUPERVISIONS)}"
        )
    lam = lam_routes["lam"].cast(pl.Float64)
    if lam.null_count() or not bool(np.all(np.isfinite(lam.to_numpy()))) or lam.min() < 0:
        raise ValueError(f"lam_routes: lam must be finite and >= 0, got {lam.unique().to_list()}")

    routes = lam_routes.select(_ROUTE_COLUMNS).with_columns(lam)
    per_draw = router_utilities(routes, view_util).with_columns(
        U=utility_expr("Q", "C", lam=pl.col("lam"))
    )
    keys = [*_KEYS, "lam"]
    several = (
        per_draw.filter(pl.col("supervision") == "dars").group_by(keys).agg(pl.len().alias("n"))
    )
    several = several.filter(pl.col("n") > 1)
    if several.height:
        r = several.sort(keys).row(0, named=True)
        raise ValueError(
            f"lam_routes: supervision 'dars' has {r['n']} draws for (dataset={r['dataset']!r}, "
            f"family={r['family']!r}, lam={r['lam']}); a dars router is one draw"
        )
    single = pl.col("supervision") == "single_shot"
    sweep = (
        per_draw.group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("n_draws"),
            pl.col("U").mean(),
            pl.col("Q").mean(),
            pl.col("C").mean(),
            pl.col("Q").std(ddof=1).fill_null(0.0).alias("Q_std"),
            pl.col("C").std(ddof=1).fill_null(0.0).alias("C_std"),
        )
        .with_columns(
            pl.when(single).then(pl.col("Q_std")).otherwise(None).alias("Q_std"),
            pl.when(single).then(pl.col("C_std")).otherwise(None).alias("C_std"),
            pl.lit(None, pl.String).alias("model"),
        )
        .select(list(PARETO_COLUMNS))
    )
    datasets = routes["dataset"].unique()
    fixed = _fixed_points(view_util.filter(pl.col("dataset").is_in(datasets.implode())))
    return (
        pl.concat([sweep.cast(PARETO_COLUMNS), fixed.cast(PARETO_COLUMNS)])
        .sort([*_KEYS, "lam", "model"], nulls_last=False)
        .select(list(PARETO_COLUMNS))
    )


def budget_frontier(pareto: pl.DataFrame, budgets: Sequence[float]) -> pl.DataFrame:
    """Best quality under a mean-cost budget, per curve of :func:`pareto_points`.

    ``pareto``: rows with at least ``dataset, view, family, supervision, lam, model, Q, C``.
    ``budgets``: mean normalised-cost budgets (finite, >= 0; duplicates dropped).

    One row per (dataset, view, family, supervision) of ``pareto`` and budget B, sorted by those
    keys then B; columns :data:`BUDGET_COLUMNS`. Among the curve's points with C <= B (up to
    :data:`BUDGET_TOL` of float rounding) it holds the one with the highest Q (ties: lower C, then
    lower λ, then model name) — its ``lam`` (null for fixed points), ``model`` (the fixed model for
    supervision ``fixed``, else null), ``Q`` and ``C``; for supervision ``fixed`` the curve is the
    set of fixed models, so the row is the best single model within the budget. When no point fits,
    ``lam``, ``model``, ``Q`` and ``C`` are null. Q is non-decreasing in B for every curve (a larger
    budget only adds candidates).
    """
    _require(
        pareto, ("dataset", "view", "family", "supervision", "lam", "model", "Q", "C"), "pareto"
    )
    b = [float(x) for x in budgets]
    if not b:
        raise ValueError("budgets is empty: give at least one mean-cost budget")
    if not all(np.isfinite(x) and x >= 0 for x in b):
        raise ValueError(f"budgets must be finite and >= 0, got {b}")
    budget_frame = pl.DataFrame({"budget": sorted(set(b))}, schema={"budget": pl.Float64})
    points = pareto.select(*_KEYS, "lam", "model", "Q", "C")
    best = (
        points.join(budget_frame, how="cross")
        .filter(pl.col("C") <= pl.col("budget") + BUDGET_TOL)
        .sort(
            [*_KEYS, "budget", "Q", "C", "lam", "model"],
            descending=[False] * 5 + [True, False, False, False],
            nulls_last=True,
        )
        .group_by([*_KEYS, "budget"], maintain_order=True)
        .first()
    )
    grid = points.select(_KEYS).unique().join(budget_frame, how="cross")
    return (
        grid.join(best, on=[*_KEYS, "budget"], how="left", nulls_equal=True)
        .select(list(BUDGET_COLUMNS))
        .cast(BUDGET_COLUMNS)
        .sort([*_KEYS, "budget"])
    )


def _sweep_routes(
    lam_routes: Mapping[tuple[str, str, str], pl.DataFrame | None],
    dataset: str,
    family: str,
    supervision: str,
    lam_grid: Sequence[float],
) -> pl.DataFrame:
    """One trained router's λ-sweep routes with dataset/family/supervision columns; errors say
    what is missing or stale and that ``dars train`` writes it."""
    key = (dataset, family, supervision)
    retrain = f"`dars train --family {family} --supervision {supervision}`"
    if key not in lam_routes:
        raise MissingInputError(
            f"no complete {family}/{supervision} router for dataset {dataset!r}: its routes are "
            f"missing (training has not run, or was interrupted); run {retrain}",
            [(ROUTES, key)],
        )
    frame = lam_routes[key]
    if frame is None:
        raise MissingInputError(
            f"the λ-sweep routes of the {family}/{supervision} router of dataset {dataset!r} are "
            f"missing: it was trained before the train stage wrote them; rerun {retrain}",
            [(LAM_ROUTES, key)],
        )
    have = sorted(frame["lam"].unique().to_list())
    want = sorted(float(x) for x in lam_grid)
    if len(have) != len(want) or not np.allclose(have, want, rtol=0, atol=1e-12):
        raise StaleInputError(
            f"the {family}/{supervision} router of dataset {dataset!r} holds routes at lam "
            f"{have} but evaluation.lam_grid is {want}; rerun {retrain} after changing the grid",
            [(LAM_ROUTES, key)],
        )
    return frame.with_columns(
        pl.lit(dataset).alias("dataset"),
        pl.lit(family).alias("family"),
        pl.lit(supervision).alias("supervision"),
    )


def compute(inputs: Inputs, exp: Experiment) -> dict[str, Any]:
    """The frontiers of every benchmark for the sweep families (``exp.evaluation
    .sweep_families``, else ``exp.families``; each needs its single_shot and dars routers
    trained with λ-sweep routes) and the budget table at ``exp.evaluation.budgets``. Test views
    are scored as in the main experiment."""
    families = sweep_families(exp)
    grid = exp.evaluation.lam_grid
    lam_routes = inputs[LAM_ROUTES]
    parts = []
    for dataset, vu in inputs[VIEW_UTILITIES].items():
        routes = pl.concat(
            [
                _sweep_routes(lam_routes, dataset, family, supervision, grid)
                for family in families
                for supervision in LAM_SWEEP_SUPERVISIONS
            ]
        )
        parts.append(pareto_points(routes, vu))
    pareto = pl.concat(parts)
    budget = budget_frontier(pareto, exp.evaluation.budgets)
    return {
        "pareto": (pareto, {"lam_grid": list(grid), "families": list(families)}),
        "pareto_budget": (budget, {"budgets": list(exp.evaluation.budgets)}),
    }


def budget_table(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """The budget-constrained frontier for one dataset from the ``pareto_budget`` result: one
    row per (view, family, supervision), one column per mean-cost budget, cells the best mean
    quality Q reachable with mean normalised cost C ≤ budget ("—": no λ meets the budget); for the
    fixed-model rows the cell names the model when the result has a ``model`` column."""
    sub = frame.filter(pl.col("dataset") == dataset)
    budgets = sorted(set(sub["budget"].to_list()))
    cell = {}
    for r in sub.iter_rows(named=True):
        text = fmt(r["Q"])
        if r["Q"] is not None and r.get("model"):
            text += f" ({r['model']})"  # fixed rows: which model is best within the budget
        cell[(r["view"], r["family"], r["supervision"], r["budget"])] = text
    supervision_order = {"single_shot": 0, "dars": 1, "fixed": 2}
    views = list(VIEW_SHORT)
    fam_rank = {f: i for i, f in enumerate(order_families(sub["family"].drop_nulls().to_list()))}
    keys = sorted(
        {(r["view"], r["family"], r["supervision"]) for r in sub.iter_rows(named=True)},
        key=lambda k: (
            views.index(k[0]) if k[0] in views else len(views),
            supervision_order.get(k[2], len(supervision_order)),
            fam_rank.get(k[1], len(fam_rank)),
            str(k[1]),
        ),
    )
    label = {b: f"C≤{b:g}" for b in budgets}
    rows = []
    for view, fam, supervision in keys:
        row = {
            "view": VIEW_SHORT.get(view, view),
            "family": fam if fam is not None else DASH,
            "supervision": supervision,
        }
        for b in budgets:
            row[label[b]] = cell.get((view, fam, supervision, b), DASH)
        rows.append(row)
    return text_table(rows, ["view", "family", "supervision", *label.values()])


def section(doc: Document, run: ReportRun) -> None:
    """Fig 4b per dataset, then the budget table per dataset."""
    pareto = run.result(doc, "pareto")
    if pareto is not None:
        doc.p(
            "Mean quality Q against mean normalised cost C of routers trained with each cost "
            "weight λ of the sweep (single-shot: mean over draws), with the pool's fixed models "
            "as points."
        )
        for d in run.present(pareto):
            doc.figure(
                f"fig4b_pareto_{d}",
                plots.pareto_frontiers(pareto, d),
                f"Fig 4b: cost–quality frontiers on {d}, single-shot (dashed) vs DARS (solid); "
                "crosses: fixed models.",
            )
    doc.h(3, "Best quality under a mean-cost budget")
    budget = run.result(doc, "pareto_budget")
    if budget is not None:
        doc.p(
            "Best mean quality Q over the λ sweep among settings whose mean normalised cost C "
            "stays within each budget (fixed: the best single model within the budget)."
        )
        for d in run.present(budget):
            doc.h(4, f"Budget table — {d}")
            doc.table(budget_table(budget, d))


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    """One small table per dataset: for each mean-cost budget, the best mean quality Q that a
    single-shot router, a DARS router (best over the families) and a fixed model reach within it,
    in each test view (the per-family numbers are in the report)."""
    budget = tables["pareto_budget"]
    labels = {"single_shot": "1-shot", "dars": "DARS", FIXED: FIXED}
    best = budget.group_by("dataset", "view", "supervision", "budget").agg(pl.col("Q").max())
    out = []
    for dataset in budget["dataset"].unique(maintain_order=True).to_list():
        sub = best.filter(pl.col("dataset") == dataset)
        cell = {
            (r["view"], r["supervision"], r["budget"]): r["Q"] for r in sub.iter_rows(named=True)
        }
        columns = {
            f"{short}\n{label}": (view_name, supervision)
            for view_name, short in VIEW_SHORT.items()
            for supervision, label in labels.items()
        }
        rows = [
            {"C ≤": b, **{c: cell.get((v, m, b)) for c, (v, m) in columns.items()}}
            for b in sorted(set(sub["budget"].to_list()))
        ]
        frame = pl.DataFrame(rows, schema={"C ≤": pl.Float64, **dict.fromkeys(columns, pl.Float64)})
        out.append(View(f"pareto — {dataset}: best quality Q with mean cost ≤ C", frame))
    return out


SPEC = register_experiment(
    ExperimentSpec(
        name="pareto",
        help="λ sweep of single-shot and DARS routers → cost–quality frontiers and a "
        "budget table (Fig 4b) → results/pareto, results/pareto_budget.",
        title="Cost–quality frontiers",
        order=50,
        inputs=(VIEW_UTILITIES, LAM_ROUTES),
        compute=compute,
        tables={"pareto": PARETO_COLUMNS, "pareto_budget": BUDGET_COLUMNS},
        section=section,
        view=view,
        figures=("fig4b_pareto_{dataset}",),
        check=check_sweep_families,
    )
)
