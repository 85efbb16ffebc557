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

import json
from pathlib import Path
from typing import Any

import polars as pl

from dars.config import Experiment
from dars.evaluation.metrics import (
    all_views_cost_bounds,
    bootstrap_ci,
    reference_rows,
    routed_cells,
    router_utilities,
    summarise_single_shot,
    view_utilities,
)
from dars.storage import RunLayout, atomic_write_table, atomic_write_text, scan_observations

MAIN_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "mode": pl.String,
    "n_draws": pl.Int64,
    "U": pl.Float64,
    "U_std": pl.Float64,
    "U_low": pl.Float64,
    "U_high": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
    "best_model": pl.String,
}


def _router_rows(
    exp: Experiment, layout: RunLayout, dataset: str, vu: pl.DataFrame, n_boot: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for family, mode in layout.trained_routers(dataset):
        path = layout.routes_file(dataset, family, mode)
        if not path.is_file():
            continue  # an interrupted training: routes.parquet is written last
        routes = pl.read_parquet(path)
        ru = router_utilities(routes, vu, dataset=dataset)
        if mode == "single_shot":
            for r in summarise_single_shot(ru).iter_rows(named=True):
                rows.append(
                    {
                        "dataset": dataset,
                        "view": r["view"],
                        "family": family,
                        "mode": mode,
                        "n_draws": r["n_draws"],
                        "U": r["U_mean"],
                        "U_std": r["U_std"],
                        "U_low": None,
                        "U_high": None,
                        "Q": r["Q_mean"],
                        "C": r["C_mean"],
                        "best_model": None,
                    }
                )
            continue
        cells = routed_cells(routes, vu, dataset=dataset)
        for r in ru.iter_rows(named=True):
            per_query = cells.filter(pl.col("view") == r["view"])["u"].to_numpy()
            lo, hi = bootstrap_ci(per_query, n_boot=n_boot, seed=exp.seed)
            rows.append(
                {
                    "dataset": dataset,
                    "view": r["view"],
                    "family": family,
                    "mode": mode,
                    "n_draws": 1,
                    "U": r["U"],
                    "U_std": None,
                    "U_low": lo,
                    "U_high": hi,
                    "Q": r["Q"],
                    "C": r["C"],
                    "best_model": None,
                }
            )
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


def evaluate_main(
    exp: Experiment, root: str | Path | None = None, *, n_boot: int = 1000
) -> pl.DataFrame:
    """Evaluate every trained router of every benchmark; write and return the ``main`` table."""
    root = exp.root if root is None else root
    layout = RunLayout(root)
    obs = scan_observations(root)
    bounds = all_views_cost_bounds(obs.filter(pl.col("status") == "ok"))
    rows: list[dict[str, Any]] = []
    for b in exp.benchmarks:
        test = scan_observations(root, dataset=b.name, split="test").filter(
            pl.col("model").is_in(exp.pool.names)
        )
        vu = view_utilities(test, lam=exp.lam, cost_bounds=bounds)
        if vu.height == 0:
            raise FileNotFoundError(
                f"no test observations for {b.name} under {root}; run `dars collect` first"
            )
        rows += _reference(b.name, vu)
        rows += _router_rows(exp, layout, b.name, vu, n_boot)
    main = pl.DataFrame(rows, schema=MAIN_COLUMNS)
    atomic_write_table(main.to_arrow(), layout.results_file("main", "parquet"))
    payload = json.dumps(
        {"lam": exp.lam, "beta": exp.beta, "rows": main.to_dicts()}, indent=1, default=str
    )
    atomic_write_text(payload, layout.results_file("main", "json"))
    return main


def main_table(main: pl.DataFrame) -> pl.DataFrame:
    """The paper's Table 1 layout: one row per (family, mode), one column per dataset × view
    (``<dataset>_rew`` / ``<dataset>_dec``), values U (single-shot: mean over draws)."""
    short = {"test_rewrite": "rew", "test_decode": "dec"}
    order = {"best_fixed": 0, "random": 1, "oracle": 2, "single_shot": 3, "dars": 4}
    return (
        main.with_columns(
            (pl.col("dataset") + "_" + pl.col("view").replace_strict(short)).alias("column")
        )
        .pivot(on="column", index=["family", "mode"], values="U", sort_columns=True)
        .with_columns(pl.col("mode").replace_strict(order, default=5).alias("_o"))
        .sort("_o", "family", "mode")
        .drop("_o")
    )


__all__ = ["MAIN_COLUMNS", "evaluate_main", "main_table"]
