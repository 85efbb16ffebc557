"""The evaluate stage, main experiment: every trained router on the two test views.

Reads the test observations and each ``models/…/routes.parquet``, computes with the pure
functions of :mod:`dars.evaluation.metrics` and writes ``results/main.parquet`` and
``results/main.json`` (through ``RunLayout``). Rows of ``main``: one per (dataset, view, family,
mode) with U, Q, C — for ``single_shot`` the mean and std over the S draws (the paper's Table 4),
otherwise the router's value with a bootstrap CI over test queries — plus the reference rows
``best_fixed`` (its model in ``best_model``), ``oracle`` and ``random`` (family = mode = the
reference's name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from dars.config import Experiment
from dars.evaluation.metrics import (
    all_views_cost_bounds,
    draw_scores,
    reference_rows,
    routed_cells,
    router_utilities,
    summarise_single_shot,
    view_utilities,
)
from dars.evaluation.results import write_result
from dars.storage import RunLayout, scan_observations

#: Columns of :func:`score_routes`, in order.
ROUTE_SCORE_COLUMNS = {
    "view": pl.String,
    "n_draws": pl.Int64,
    "U": pl.Float64,
    "U_std": pl.Float64,
    "U_low": pl.Float64,
    "U_high": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
}

#: Columns of ``results/main`` (see the module docstring), in order.
MAIN_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "mode": pl.String,
    **{k: v for k, v in ROUTE_SCORE_COLUMNS.items() if k != "view"},
    "best_model": pl.String,
}


def score_routes(
    routes: pl.DataFrame,
    view_util: pl.DataFrame,
    *,
    dataset: str,
    single_shot: bool,
    n_boot: int,
    seed: int,
) -> pl.DataFrame:
    """Score one trained router's test routes in every view (pure).

    ``routes``: the rows of one ``routes.parquet`` (``draw, query_id, model``); ``view_util``:
    :func:`~dars.evaluation.metrics.view_utilities` rows of ``dataset``. One row per view
    (sorted) with :data:`ROUTE_SCORE_COLUMNS`. ``single_shot``: the routes hold S draws and the
    row reports ``n_draws = S``, ``U``/``Q``/``C`` = mean over draws and ``U_std`` = their std
    (no CI); otherwise ``n_draws = 1`` and ``U_low``/``U_high`` = percentile bootstrap CI of U
    over test queries (``n_boot`` resamples, numpy seed ``seed``).
    """
    if single_shot:
        rows: list[dict[str, Any]] = []
        ru = router_utilities(routes, view_util, dataset=dataset)
        for r in summarise_single_shot(ru).iter_rows(named=True):
            rows.append(
                {
                    "view": r["view"],
                    "n_draws": r["n_draws"],
                    "U": r["U_mean"],
                    "U_std": r["U_std"],
                    "U_low": None,
                    "U_high": None,
                    "Q": r["Q_mean"],
                    "C": r["C_mean"],
                }
            )
        return pl.DataFrame(rows, schema=ROUTE_SCORE_COLUMNS)
    scored = draw_scores(routed_cells(routes, view_util, dataset=dataset), n_boot=n_boot, seed=seed)
    return scored.select(
        "view",
        pl.lit(1, dtype=pl.Int64).alias("n_draws"),
        "U",
        pl.lit(None, dtype=pl.Float64).alias("U_std"),
        "U_low",
        "U_high",
        "Q",
        "C",
    ).cast(ROUTE_SCORE_COLUMNS)


def _router_rows(
    exp: Experiment, layout: RunLayout, dataset: str, vu: pl.DataFrame, n_boot: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for family, mode in layout.trained_routers(dataset):
        path = layout.routes_file(dataset, family, mode)
        if not path.is_file():
            continue  # an interrupted training: routes.parquet is written last
        scored = score_routes(
            pl.read_parquet(path),
            vu,
            dataset=dataset,
            single_shot=mode == "single_shot",
            n_boot=n_boot,
            seed=exp.seed,
        )
        rows += [
            {"dataset": dataset, **r, "family": family, "mode": mode, "best_model": None}
            for r in scored.iter_rows(named=True)
        ]
    return rows


def _reference(dataset: str, vu: pl.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for r in reference_rows(vu).iter_rows(named=True):
        for name, prefix in (("best_fixed", "best"), ("oracle", "oracle"), ("random", "random")):
            rows.append(
                {
                    "dataset": dataset,
                    "view": r["view"],
                    "family": name,
                    "mode": name,
                    "n_draws": 1,
                    "U": r[f"{prefix}_U"],
                    "U_std": None,
                    "U_low": None,
                    "U_high": None,
                    "Q": r[f"{prefix}_Q"],
                    "C": r[f"{prefix}_C"],
                    "best_model": r["best_model"] if name == "best_fixed" else None,
                }
            )
    return rows


def load_test_views(exp: Experiment, root: str | Path, dataset: str) -> pl.DataFrame:
    """:func:`~dars.evaluation.metrics.view_utilities` of ``dataset``'s test observations of the
    pool models under ``root``, at ``exp.lam``, with cost normalised over all of the dataset's
    ok observations (train and test, every model), so train and test share one scale.

    Raises ``FileNotFoundError`` naming the store and ``dars collect`` when the dataset has no
    ok test observation.
    """
    test = scan_observations(
        root, dataset=dataset, split="test", model=exp.pool.names, status="ok"
    ).collect()
    if test.height == 0:
        raise FileNotFoundError(
            f"no ok test observations of the pool models for dataset {dataset!r} under "
            f"{RunLayout(root).observations_dir()}; run `dars collect` first"
        )
    bounds = all_views_cost_bounds(scan_observations(root, dataset=dataset, status="ok"))
    return view_utilities(test, lam=exp.lam, cost_bounds=bounds)


def load_view_utilities(exp: Experiment, root: str | Path) -> dict[str, pl.DataFrame]:
    """``{dataset: load_test_views(exp, root, dataset)}`` for every benchmark of ``exp``."""
    return {b.name: load_test_views(exp, root, b.name) for b in exp.benchmarks}


def evaluate_main(
    exp: Experiment, root: str | Path | None = None, *, n_boot: int | None = None
) -> pl.DataFrame:
    """Evaluate every trained router of every benchmark; write and return the ``main`` table.
    ``n_boot`` (default ``exp.evaluation.n_boot``): bootstrap resamples of the CIs."""
    root = exp.root if root is None else root
    n_boot = exp.evaluation.n_boot if n_boot is None else n_boot
    layout = RunLayout(root)
    rows: list[dict[str, Any]] = []
    for dataset, vu in load_view_utilities(exp, root).items():
        rows += _reference(dataset, vu)
        rows += _router_rows(exp, layout, dataset, vu, n_boot)
    main = pl.DataFrame(rows, schema=MAIN_COLUMNS)
    write_result(exp, root, "main", main)
    return main


__all__ = [
    "MAIN_COLUMNS",
    "ROUTE_SCORE_COLUMNS",
    "evaluate_main",
    "load_test_views",
    "load_view_utilities",
    "score_routes",
]
