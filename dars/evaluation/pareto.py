"""The Pareto experiment (the paper's Fig 4b): cost–quality frontiers over a λ sweep.

A router trained at one λ ranks models by u = q − λc − βσ; routing the same fitted router at
other λ traces how much quality it buys for how much cost. The train stage writes those routes
(``lam_routes.parquet``, one per (dataset, family, mode) for the single_shot and dars modes, at
every λ of ``exp.evaluation.lam_grid``; see :mod:`dars.training`), so no refit happens here.

* :func:`pareto_points` (pure) — one row per (dataset, view, family, mode, lam): mean test
  quality Q and normalised cost C of the routes, plus one point per fixed model;
* :func:`budget_frontier` (pure) — the best quality each (family, mode) reaches under a mean
  cost budget;
* :func:`evaluate_pareto` (I/O) — reads storage, writes results ``pareto`` and
  ``pareto_budget``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from dars.config import Experiment
from dars.evaluation.metrics import (
    VIEW_UTIL_COLUMNS,
    router_utilities,
)
from dars.evaluation.results import write_result
from dars.evaluation.stage import load_view_utilities
from dars.routers.training import LAM_SWEEP_MODES, check_families
from dars.storage import RunLayout
from dars.utility import utility_expr

__all__ = [
    "BUDGET_COLUMNS",
    "BUDGET_TOL",
    "FIXED",
    "PARETO_COLUMNS",
    "budget_frontier",
    "evaluate_pareto",
    "pareto_points",
]

#: family and mode of the fixed-model points.
FIXED = "fixed"

#: Columns of result ``pareto`` (see :func:`pareto_points`).
PARETO_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "mode": pl.String,
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
    "mode": pl.String,
    "budget": pl.Float64,
    "lam": pl.Float64,
    "model": pl.String,
    "Q": pl.Float64,
    "C": pl.Float64,
}

_KEYS = ["dataset", "view", "family", "mode"]
_ROUTE_COLUMNS = ("dataset", "family", "mode", "lam", "draw", "query_id", "model")


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
        pl.lit(FIXED).alias("mode"),
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
    """Cost–quality points of routers over a λ sweep and of every fixed model (pure).

    ``lam_routes``: rows of ``lam_routes.parquet`` files stacked with the columns ``dataset``,
    ``family`` and ``mode`` (``single_shot`` or ``dars``) added — one row per (dataset, family,
    mode, lam, draw, query_id) with the routed ``model`` (``model_index`` is ignored).
    ``view_util``: :func:`~dars.evaluation.metrics.view_utilities` rows (at any λ: only the
    λ-free ``q`` and ``c`` are used).

    Returns :data:`PARETO_COLUMNS`, sorted by (dataset, view, family, mode, lam):

    * one row per (dataset, view, family, mode, lam) of the routes: per draw, Q and C are the
      means over the view's test queries of the routed model's ``q`` and normalised cost ``c``,
      and U = Q − lam·C (the mean test utility at that λ); the row holds the mean over the
      ``n_draws`` draws. ``Q_std``/``C_std``: sample std over the draws (ddof = 1; 0 for one
      draw) for ``single_shot``, null for ``dars`` (one router, which must have one draw);
      ``model`` is null;
    * one row per (dataset, view, model) for the datasets of ``lam_routes``: family = mode =
      ``"fixed"``, ``model`` its name, ``lam``, ``U`` and the stds null, ``n_draws`` 1, Q and C
      of sending every test query of the view to that model.

    Raises ``ValueError`` for a missing column, an unknown mode, a null/negative/non-finite λ,
    a ``dars`` router with several draws, and everything
    :func:`~dars.evaluation.metrics.router_utilities` rejects (a query routed twice or not at
    all in some (lam, draw), a routed cell without test observations).
    """
    _require(lam_routes, _ROUTE_COLUMNS, "lam_routes")
    _require(view_util, VIEW_UTIL_COLUMNS, "view_util")
    if lam_routes.height == 0:
        raise ValueError("lam_routes is empty")
    modes = sorted(lam_routes["mode"].unique().to_list(), key=str)
    bad = [m for m in modes if m not in LAM_SWEEP_MODES]
    if bad:
        raise ValueError(f"lam_routes has mode(s) {bad}; expected only {list(LAM_SWEEP_MODES)}")
    lam = lam_routes["lam"].cast(pl.Float64)
    if lam.null_count() or not bool(np.all(np.isfinite(lam.to_numpy()))) or lam.min() < 0:
        raise ValueError(f"lam_routes: lam must be finite and >= 0, got {lam.unique().to_list()}")

    routes = lam_routes.select(_ROUTE_COLUMNS).with_columns(lam)
    per_draw = router_utilities(routes, view_util).with_columns(
        U=utility_expr("Q", "C", lam=pl.col("lam"))
    )
    keys = [*_KEYS, "lam"]
    several = per_draw.filter(pl.col("mode") == "dars").group_by(keys).agg(pl.len().alias("n"))
    several = several.filter(pl.col("n") > 1)
    if several.height:
        r = several.sort(keys).row(0, named=True)
        raise ValueError(
            f"lam_routes: mode 'dars' has {r['n']} draws for (dataset={r['dataset']!r}, "
            f"family={r['family']!r}, lam={r['lam']}); a dars router is one draw"
        )
    single = pl.col("mode") == "single_shot"
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
    """Best quality under a mean-cost budget, per curve of :func:`pareto_points` (pure).

    ``pareto``: rows with at least ``dataset, view, family, mode, lam, model, Q, C``.
    ``budgets``: mean normalised-cost budgets (finite, >= 0; duplicates dropped).

    One row per (dataset, view, family, mode) of ``pareto`` and budget B, sorted by those keys
    then B; columns :data:`BUDGET_COLUMNS`. Among the curve's points with C <= B (up to
    :data:`BUDGET_TOL` of float rounding) it holds the one
    with the highest Q (ties: lower C, then lower λ, then model name) — its ``lam`` (null for
    fixed points), ``model`` (the fixed model for mode ``fixed``, else null), ``Q`` and ``C``;
    for mode ``fixed`` the curve is the set of fixed models, so the row is the best single model
    within the budget. When no point fits, ``lam``, ``model``, ``Q`` and ``C`` are null. Q is
    non-decreasing in B for every curve (a larger budget only adds candidates).
    """
    _require(pareto, ("dataset", "view", "family", "mode", "lam", "model", "Q", "C"), "pareto")
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


def _lam_routes(
    layout: RunLayout, dataset: str, family: str, mode: str, lam_grid: Sequence[float]
) -> pl.DataFrame:
    """One trained router's ``lam_routes.parquet`` with dataset/family/mode columns; errors say
    which file is missing or stale and that ``dars train`` writes it."""
    lam_path = layout.lam_routes_file(dataset, family, mode)
    routes_path = layout.routes_file(dataset, family, mode)
    retrain = f"`dars train --family {family} --mode {mode}`"
    if not routes_path.is_file():
        what = "was interrupted" if lam_path.is_file() else "has not run"
        raise FileNotFoundError(
            f"no complete {family}/{mode} router for dataset {dataset!r}: {routes_path} is "
            f"missing (training {what}); run {retrain}"
        )
    if not lam_path.is_file():
        raise FileNotFoundError(
            f"{lam_path} is missing: the {family}/{mode} router of dataset {dataset!r} was "
            f"trained before the train stage wrote λ-sweep routes; rerun {retrain}"
        )
    frame = pl.read_parquet(lam_path)
    have = sorted(frame["lam"].unique().to_list())
    want = sorted(float(x) for x in lam_grid)
    if len(have) != len(want) or not np.allclose(have, want, rtol=0, atol=1e-12):
        raise ValueError(
            f"{lam_path} holds routes at lam {have} but evaluation.lam_grid is {want}; "
            f"rerun {retrain} after changing the grid"
        )
    return frame.with_columns(
        pl.lit(dataset).alias("dataset"), pl.lit(family).alias("family"), pl.lit(mode).alias("mode")
    )


def evaluate_pareto(
    exp: Experiment, root: str | Path | None = None, *, families: Sequence[str] | None = None
) -> pl.DataFrame:
    """Run the Pareto experiment on every benchmark and write results ``pareto`` (returned;
    :func:`pareto_points` rows) and ``pareto_budget`` (:func:`budget_frontier` rows at
    ``exp.evaluation.budgets``).

    ``families`` default: ``exp.evaluation.sweep_families``, else ``exp.routers``; each needs
    its single_shot and dars routers trained with λ-sweep routes (``dars train``). Test views
    are scored as in the main experiment: cost normalised on one scale per dataset over all its
    observations, pool models only.
    """
    root = exp.root if root is None else root
    if families is None:
        families = exp.evaluation.sweep_families or exp.routers
    families = check_families(families)
    grid = exp.evaluation.lam_grid
    layout = RunLayout(root)
    parts = []
    for dataset, vu in load_view_utilities(exp, root).items():
        routes = pl.concat(
            [
                _lam_routes(layout, dataset, family, mode, grid)
                for family in families
                for mode in LAM_SWEEP_MODES
            ]
        )
        parts.append(pareto_points(routes, vu))
    pareto = pl.concat(parts)
    budget = budget_frontier(pareto, exp.evaluation.budgets)
    write_result(exp, root, "pareto", pareto, lam_grid=list(grid), families=list(families))
    write_result(exp, root, "pareto_budget", budget, budgets=list(exp.evaluation.budgets))
    return pareto
