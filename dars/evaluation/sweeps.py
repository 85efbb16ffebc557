"""Sample-efficiency (Fig 4a) and β (Fig 4c) sweeps: routers refitted per setting, scored on test.

Both experiments fit routers in memory (nothing is written under ``models/``) on DARS targets
that vary along one axis and score their test routes on the two test views
(:mod:`dars.evaluation.metrics`):

* **sample efficiency** — the supervise stage's ``subgrid`` table holds full DARS computed on
  seeded k-rewrites × m-decodes sub-grids of the training grid. For every router family and
  every (k, m) protocol the router is fitted on that protocol's targets (q = μ, c = c̄,
  σ = q_std, like train mode ``dars``) and routes the test queries at (λ, β) of the experiment.
  When every protocol covers the same training queries, one ``Router.fit_many`` call per family
  fits all protocols (protocols as draws of ``BatchedTargets``); otherwise each is fitted alone.
* **β sweep** — the ``dars`` table's router routes the test queries at (λ, β) for every β of
  ``exp.evaluation.beta_grid``. Families that fold β into their training targets (a ``beta``
  hyperparameter: embedllm, rm_softmax) are refitted per β; the others are fitted once and their
  predicted utility q − λc − βσ is re-weighted per β.

Pure parts (frames/arrays in, frame out): :func:`score_route_sets` (route indices → U, CI, Q, C
per view), :func:`protocol_targets`, :func:`fit_protocols`, :func:`sample_efficiency`,
:func:`beta_sweep`. I/O parts (test views come from
:func:`~dars.evaluation.stage.load_test_views`): :func:`load_sweep_data`,
:func:`evaluate_sample_efficiency`, :func:`evaluate_beta`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl
from sklearn.base import clone

from dars.config import Experiment
from dars.evaluation.metrics import draw_scores, routed_cells
from dars.evaluation.results import write_result
from dars.evaluation.stage import load_test_views
from dars.routers import BatchedTargets, Router, Targets, route_many
from dars.routers.training import check_families, folds_beta, routes_table, training_targets
from dars.storage.supervision_store import read_supervision
from dars.tasks.train import embed_queries, router_for

__all__ = [
    "BETA_COLUMNS",
    "SAMPLE_EFFICIENCY_COLUMNS",
    "SCORE_COLUMNS",
    "ProtocolTargets",
    "SweepData",
    "beta_sweep",
    "evaluate_beta",
    "evaluate_sample_efficiency",
    "fit_protocols",
    "load_sweep_data",
    "protocol_targets",
    "sample_efficiency",
    "score_route_sets",
    "sweep_families",
]

#: Columns of :func:`score_route_sets` after the caller's key columns.
SCORE_COLUMNS = ("dataset", "view", "n_queries", "U", "U_low", "U_high", "Q", "C")

_VALUES = {
    "U": pl.Float64,
    "U_low": pl.Float64,
    "U_high": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
}
#: Schema of the ``sample_efficiency`` result.
SAMPLE_EFFICIENCY_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "k": pl.Int32,
    "m": pl.Int32,
    "n_obs": pl.Int64,
    **_VALUES,
}
#: Schema of the ``beta`` result.
BETA_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "beta": pl.Float64,
    **_VALUES,
}


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


class ProtocolTargets(NamedTuple):
    """Training targets of one (k, m) protocol: ``rows`` are positions into the train ids of
    the queries it covers (split order), ``targets`` their q = μ, c = c̄, σ = q_std."""

    k: int
    m: int
    rows: list[int]
    targets: Targets

    @property
    def n_obs(self) -> int:
        """Observations per (query, model) cell in the protocol."""
        return self.k * self.m


# ------------------------------------------------------------------------------------------------
# pure parts
# ------------------------------------------------------------------------------------------------
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


def protocol_targets(
    subgrid: pl.DataFrame, train_ids: Sequence[str], models: Sequence[str]
) -> list[ProtocolTargets]:
    """Training targets of every (k, m) protocol of a ``subgrid`` supervision table (one dataset).

    ``subgrid``: one row per (k, m, query_id, model) with the aggregate columns (``q_mean``,
    ``c_mean``, ``q_std``; see :mod:`dars.supervision.stage`). A protocol keeps the queries that
    have a row for every model of ``models`` (a cell whose kept slots all failed is absent from
    the table, and a router needs the full row). Returns one :class:`ProtocolTargets` per
    protocol, sorted by (k, m).
    """
    need = ("k", "m", "query_id", "model", "q_mean", "c_mean", "q_std")
    missing = [c for c in need if c not in subgrid.columns]
    if missing:
        raise ValueError(f"subgrid table lacks column(s) {missing}; it has {subgrid.columns}")
    if subgrid.height == 0:
        raise ValueError("subgrid table is empty")
    models = list(models)
    out = []
    for (k, m), part in sorted(subgrid.group_by("k", "m"), key=lambda kv: kv[0]):
        part = part.filter(pl.col("model").is_in(models))
        full = (
            part.group_by("query_id")
            .agg(pl.col("model").n_unique().alias("n"))
            .filter(pl.col("n") == len(models))
        )
        part = part.join(full, on="query_id", how="semi").drop("k", "m")
        if part.height == 0:
            raise ValueError(
                f"subgrid protocol (k={k}, m={m}) has no train query with a row for every pool "
                f"model {models}"
            )
        try:
            rows, targets = training_targets(part, "dars", train_ids, models)
        except ValueError as exc:
            raise ValueError(f"subgrid protocol (k={k}, m={m}): {exc}") from exc
        out.append(ProtocolTargets(int(k), int(m), rows, targets))  # type: ignore[arg-type]
    return out


def fit_protocols(
    prototype: Router, X_train: np.ndarray, protocols: Sequence[ProtocolTargets]
) -> list[Router]:
    """One fitted clone of ``prototype`` per protocol (same order).

    ``X_train``: embeddings of every train query (rows = positions used by
    ``ProtocolTargets.rows``). When all protocols cover the same queries they are fitted in one
    ``fit_many`` call (each protocol a draw of ``BatchedTargets``; the result equals separate
    fits, see ``Router.fit_many``), except for families whose batched fit is approximate (mlp),
    which are fitted one by one.
    """
    if not protocols:
        raise ValueError("no protocol to fit")
    rows = protocols[0].rows
    if len(protocols) > 1 and all(p.rows == rows for p in protocols):
        batched = BatchedTargets.stack([p.targets for p in protocols])
        # The "draws" are protocols, not exchangeable single-shot draws: every curve point must
        # be its own independent fit, so families whose batching is approximate fit one by one.
        return prototype.fit_many(X_train[rows], batched, exact=True)
    return [clone(prototype).fit(X_train[p.rows], p.targets) for p in protocols]


def sample_efficiency(
    subgrid: pl.DataFrame,
    data: SweepData,
    prototypes: Mapping[str, Router],
    *,
    lam: float,
    beta: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """The sample-efficiency curve of one dataset (pure: routers are fitted in memory).

    ``subgrid``: the dataset's ``subgrid`` supervision (see :func:`protocol_targets`).
    ``prototypes``: family name → unfitted router (e.g. :func:`dars.training.new_router`).
    Every family is fitted on every (k, m) protocol (:func:`fit_protocols`) and routes
    ``data.test_ids`` at (``lam``, ``beta``).

    One row per (family, k, m, view), ordered so (family in ``prototypes`` order, then k, m,
    view): columns :data:`SAMPLE_EFFICIENCY_COLUMNS`; ``n_obs = k·m`` observations per training
    cell, ``U``/``Q``/``C`` and the CI as in :func:`score_route_sets`.
    """
    protocols = protocol_targets(subgrid, data.train_ids, data.models)
    keys = pl.DataFrame(
        {
            "k": [p.k for p in protocols],
            "m": [p.m for p in protocols],
            "n_obs": [p.n_obs for p in protocols],
        },
        schema={"k": pl.Int32, "m": pl.Int32, "n_obs": pl.Int64},
    )
    parts = []
    for family, proto in prototypes.items():
        routers = fit_protocols(proto, data.X_train, protocols)
        routes = route_many(routers, data.X_test, lam=lam, beta=beta)
        scored = score_route_sets(
            routes,
            data.test_ids,
            data.models,
            data.view_util,
            dataset=data.dataset,
            keys=keys.with_columns(family=pl.lit(family, pl.String)),
            n_boot=n_boot,
            seed=seed,
        )
        parts.append(scored)
    return _select(parts, SAMPLE_EFFICIENCY_COLUMNS)


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
    """Test utility of DARS-trained routers routing at each β (pure: fits in memory).

    ``dars``: the dataset's ``dars`` supervision (one row per (query_id, model) with ``q_mean,
    c_mean, q_std``). ``prototypes``: family name → unfitted router. A family that folds β into
    training (:func:`folds_beta`) is refitted with ``beta=β`` for each β; any other is fitted
    once and routes ``data.test_ids`` at (``lam``, β) for each β.

    One row per (family, β, view), ordered so (family in ``prototypes`` order, β as given,
    view): columns :data:`BETA_COLUMNS`, values as in :func:`score_route_sets`.
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
    return _select(parts, BETA_COLUMNS)


def _select(parts: list[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=dict(schema))
    return pl.concat(parts).select([pl.col(c).cast(t) for c, t in schema.items()])


# ------------------------------------------------------------------------------------------------
# I/O
# ------------------------------------------------------------------------------------------------
def sweep_families(exp: Experiment) -> list[str]:
    """Families of the sweeps: ``exp.evaluation.sweep_families``, or ``exp.routers`` when unset
    (unknown names raise listing the valid ones)."""
    families = exp.evaluation.sweep_families
    return check_families(exp.routers if families is None else families)


def load_sweep_data(exp: Experiment, root: str | Path, dataset: str) -> SweepData:
    """Embeddings (:func:`dars.training.embed_queries`, cached under ``root``) and test view
    utilities (:func:`load_test_views`) of ``dataset``."""
    view_util = load_test_views(exp, root, dataset)
    run = exp if str(root) == exp.root else exp.model_copy(update={"root": str(root)})
    train_ids, X_train, test_ids, X_test, _ = embed_queries(run, dataset)
    return SweepData(
        dataset=dataset,
        models=tuple(exp.pool.names),
        train_ids=train_ids,
        X_train=X_train,
        test_ids=test_ids,
        X_test=X_test,
        view_util=view_util,
    )


def _prototypes(exp: Experiment) -> dict[str, Router]:
    return {family: router_for(exp, family) for family in sweep_families(exp)}


def evaluate_sample_efficiency(exp: Experiment, root: str | Path | None = None) -> pl.DataFrame:
    """Run :func:`sample_efficiency` on every benchmark under ``root`` (default ``exp.root``)
    with the sweep families at (``exp.lam``, ``exp.beta``); write and return the
    ``sample_efficiency`` result (rows ordered by benchmark in config order, then as in
    :func:`sample_efficiency`).

    Needs the ``subgrid`` supervision table (``dars supervise``) and test observations
    (``dars collect``); a missing input raises naming the file and the command.
    """
    root = exp.root if root is None else root
    prototypes = _prototypes(exp)
    parts = []
    for b in exp.benchmarks:
        subgrid = read_supervision(root, b.name, "subgrid")
        data = load_sweep_data(exp, root, b.name)
        parts.append(
            sample_efficiency(
                subgrid,
                data,
                prototypes,
                lam=exp.lam,
                beta=exp.beta,
                n_boot=exp.evaluation.n_boot,
                seed=exp.seed,
            )
        )
    table = _select(parts, SAMPLE_EFFICIENCY_COLUMNS)
    write_result(exp, root, "sample_efficiency", table)
    return table


def evaluate_beta(exp: Experiment, root: str | Path | None = None) -> pl.DataFrame:
    """Run :func:`beta_sweep` on every benchmark under ``root`` (default ``exp.root``) with the
    sweep families over ``exp.evaluation.beta_grid`` at ``exp.lam``; write and return the
    ``beta`` result (rows ordered by benchmark in config order, then as in :func:`beta_sweep`).

    Needs the ``dars`` supervision table (``dars supervise``) and test observations
    (``dars collect``); a missing input raises naming the file and the command.
    """
    root = exp.root if root is None else root
    prototypes = _prototypes(exp)
    parts = []
    for b in exp.benchmarks:
        dars = read_supervision(root, b.name, "dars")
        data = load_sweep_data(exp, root, b.name)
        parts.append(
            beta_sweep(
                dars,
                data,
                prototypes,
                betas=exp.evaluation.beta_grid,
                lam=exp.lam,
                n_boot=exp.evaluation.n_boot,
                seed=exp.seed,
            )
        )
    table = _select(parts, BETA_COLUMNS)
    write_result(exp, root, "beta", table)
    return table
