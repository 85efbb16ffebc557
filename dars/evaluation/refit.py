"""Shared by the experiments that refit routers in memory (sample efficiency, β sweep).

Those experiments fit routers on DARS targets that vary along one axis — nothing is written
under ``models/`` — and score their test routes on the two test views
(:mod:`dars.evaluation.metrics`). What they share:

* :class:`SweepData` — what a sweep needs of one dataset besides its supervision, and
  :func:`sweep_inputs` to get it, with the dataset's supervision, from an experiment's inputs;
* :func:`sweep_families` / :func:`check_sweep_families` / :func:`sweep_prototypes` — the families
  of the sweeps and unfitted routers built as the train stage builds them
  (:func:`dars.routers.training.new_router`: the experiment's seed, β and λ grid);
* :func:`score_route_sets` — route indices → U, CI, Q, C per view;
* :func:`select_schema` — stack per-dataset parts into a table of one schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import polars as pl

from dars.evaluation.experiments.base import (
    EMBEDDINGS,
    VIEW_UTILITIES,
    Input,
    Inputs,
    QueryEmbeddings,
)
from dars.evaluation.metrics import draw_scores, routed_cells
from dars.routers import Router
from dars.routers.training import check_families, new_router, routes_table

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = [
    "SCORE_COLUMNS",
    "SweepData",
    "check_sweep_families",
    "score_route_sets",
    "select_schema",
    "sweep_data",
    "sweep_families",
    "sweep_inputs",
    "sweep_prototypes",
]

#: Columns of :func:`score_route_sets` after the caller's key columns.
SCORE_COLUMNS = ("dataset", "view", "n_queries", "U", "U_low", "U_high", "Q", "C")


class SweepData(NamedTuple):
    """What a sweep needs of one dataset besides its supervision.

    ``models``: pool names (target columns, route indices refer to them). ``train_ids`` /
    ``test_ids``: query ids in split order, one row of ``X_train`` / ``X_test`` (query
    embeddings) each. ``view_util``: :func:`~dars.evaluation.metrics.view_utilities` of the
    dataset's test observations (one row per (dataset, view, query_id, model)).
    """

    dataset: str
    models: tuple[str, ...]
    train_ids: list[str]
    X_train: np.ndarray
    test_ids: list[str]
    X_test: np.ndarray
    view_util: pl.DataFrame


def sweep_data(
    dataset: str, models: Sequence[str], embeddings: QueryEmbeddings, view_util: pl.DataFrame
) -> SweepData:
    """:class:`SweepData` of ``dataset`` from its stored inputs."""
    return SweepData(
        dataset=dataset,
        models=tuple(models),
        train_ids=embeddings.train_ids,
        X_train=embeddings.X_train,
        test_ids=embeddings.test_ids,
        X_test=embeddings.X_test,
        view_util=view_util,
    )


def sweep_inputs(
    inputs: Inputs, exp: Experiment, table: Input
) -> Iterator[tuple[pl.DataFrame, SweepData]]:
    """(supervision rows, :class:`SweepData`) of every benchmark, in config order: ``table`` is
    the supervision input the sweep trains on; the view utilities and embeddings come from
    ``inputs`` too (the spec declares all three)."""
    for dataset, rows in inputs[table].items():
        yield (
            rows,
            sweep_data(
                dataset,
                exp.models_for(dataset),
                inputs[EMBEDDINGS][dataset],
                inputs[VIEW_UTILITIES][dataset],
            ),
        )


def sweep_families(exp: Experiment) -> list[str]:
    """Families of the sweeps: ``exp.evaluation.sweep_families``, or ``exp.families`` when unset
    (unknown names raise listing the valid ones)."""
    families = exp.evaluation.sweep_families
    return check_families(exp.families if families is None else families)


def check_sweep_families(exp: Experiment) -> None:
    """A spec's ``check``: the sweep families must be registered router families."""
    sweep_families(exp)


def sweep_prototypes(exp: Experiment) -> dict[str, Router]:
    """Family → unfitted router, as the train stage builds it for ``exp`` (its preset, seed, β
    and the λ grid of a λ-conditioned family: the experiment's λ plus the Pareto sweep)."""
    return {
        family: new_router(
            family,
            random_state=exp.seed,
            beta=exp.beta,
            lam_grid=(exp.lam, *exp.evaluation.lam_grid),
            preset=exp.router_preset_of(family),
        )
        for family in sweep_families(exp)
    }


def score_route_sets(
    routes: np.ndarray,
    query_ids: Sequence[str],
    models: Sequence[str],
    view_util: pl.DataFrame,
    *,
    dataset: str,
    keys: pl.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Test utility of R sets of routes on every test view, with bootstrap CIs.

    ``routes``: int array (R, n_queries); ``routes[r, i]`` indexes ``models`` for
    ``query_ids[i]``. ``view_util``: :func:`~dars.evaluation.metrics.view_utilities` rows of
    ``dataset``. ``keys``: optional frame of R rows describing each route set (e.g. ``family,
    beta``); its columns lead the output.

    One row per (route set r, view), ordered by r then view: ``keys`` of row r, then
    :data:`SCORE_COLUMNS` — ``n_queries`` (test queries the view scores), ``U``/``Q``/``C`` =
    mean over those queries of the routed model's ``u``/``q``/``c`` in the view, ``U_low`` /
    ``U_high`` = percentile bootstrap CI of ``U`` over queries
    (:func:`~dars.evaluation.metrics.bootstrap_ci` with ``n_boot`` and ``seed``; the same seed
    for every route set, as in the main table, so intervals are comparable).

    Raises like :func:`~dars.evaluation.metrics.routed_cells` when the routes skip a scored
    query or route to a cell the view never observed.
    """
    routes = np.asarray(routes)
    if routes.ndim != 2 or routes.shape[0] == 0:
        raise ValueError(f"routes must be a non-empty (route sets, queries) array: {routes.shape}")
    n_sets = routes.shape[0]
    if keys is not None and keys.height != n_sets:
        raise ValueError(f"keys has {keys.height} rows for {n_sets} route sets")
    frame = routes_table(routes, query_ids, models)
    cells = routed_cells(frame, view_util, dataset=dataset)  # type: ignore[arg-type]
    # routed_cells checks that every draw routes exactly the view's queries and sorts them, so
    # the bootstrap resamples the same queries for every route set.
    out = (
        draw_scores(cells, n_boot=n_boot, seed=seed)
        .rename({"draw": "_set"})
        .with_columns(pl.col("_set").cast(pl.Int64))
        .sort("_set", "view")
        .select("_set", *SCORE_COLUMNS)
    )
    if keys is not None:
        index = pl.Series("_set", np.arange(n_sets, dtype=np.int64))
        out = keys.with_columns(index).join(out, on="_set", how="inner").sort("_set", "view")
    return out.drop("_set")


def select_schema(parts: Sequence[pl.DataFrame], schema: Mapping[str, Any]) -> pl.DataFrame:
    """``parts`` stacked with exactly the columns of ``schema``, cast to its dtypes (an empty
    frame of that schema when there is no part)."""
    if not parts:
        return pl.DataFrame(schema=dict(schema))
    return pl.concat(parts).select([pl.col(c).cast(t) for c, t in schema.items()])
