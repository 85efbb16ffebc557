"""Pure helpers of router training shared by the train stage and the evaluation sweeps.

Supervisions (the labelling scheme a router is trained on, :data:`SUPERVISIONS`):

``single_shot``
    ``single_shot_draws`` targets (one observed score and cost per cell and draw, no spread),
    one router per draw trained together with ``Router.fit_many``.
``dars``
    The ``dars`` table: q = μ, c = c̄, σ = q_std.
a Table-2 ablation (``input_only``, ``output_only``, ``without_risk``, ``rewrite_risk``,
``decoding_risk``, ``full_dars``)
    That supervision's rows of the ``ablations`` table, with σ = q_std except ``without_risk``
    (trained without a spread: its point is β = 0).

Routes are frames: one row per (draw, query_id) with the chosen ``model`` and its
``model_index`` in the pool (:func:`routes_table`), and the same per λ of a sweep
(:func:`lam_routes_table`). Nothing here reads or writes files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from dars.presets import PRESETS, split_router_name
from dars.routers.base import (
    Router,
    _check_same_family,
    check_X,
    predict_stats_many,
    route_many,
)
from dars.routers.registry import available_routers, make_router, preset_params
from dars.routers.targets import (
    BatchedTargets,
    Targets,
    batched_targets_from_frame,
    targets_from_frame,
)
from dars.supervision.ablations import ABLATIONS

__all__ = [
    "ABLATION_SUPERVISIONS",
    "DEFAULT_SUPERVISIONS",
    "LAM_ROUTE_COLUMNS",
    "LAM_SWEEP_SUPERVISIONS",
    "ROUTE_COLUMNS",
    "SUPERVISIONS",
    "FittedRoutes",
    "check_families",
    "check_supervisions",
    "fit_and_route",
    "folds_beta",
    "lam_routes_table",
    "new_router",
    "route_lam_grid",
    "routes_table",
    "training_targets",
]

#: The five Table-2 ablations (``full_dars`` equals ``dars`` and is not trained by default).
ABLATION_SUPERVISIONS: tuple[str, ...] = tuple(a for a in ABLATIONS if a != "full_dars")
#: What ``dars train`` trains when no ``--supervision`` is given.
DEFAULT_SUPERVISIONS: tuple[str, ...] = ("single_shot", "dars", *ABLATION_SUPERVISIONS)
#: Every supervision a router can be trained on.
SUPERVISIONS: tuple[str, ...] = ("single_shot", "dars", *ABLATIONS)
#: Supervisions whose test routes are also computed at every λ of the Pareto sweep.
LAM_SWEEP_SUPERVISIONS: tuple[str, ...] = ("single_shot", "dars")
#: Columns of :func:`routes_table`.
ROUTE_COLUMNS = {
    "draw": pl.Int32,
    "query_id": pl.String,
    "model": pl.String,
    "model_index": pl.Int32,
}
#: Columns of :func:`lam_routes_table`: the sweep's λ, then :data:`ROUTE_COLUMNS`.
LAM_ROUTE_COLUMNS = {"lam": pl.Float64, **ROUTE_COLUMNS}


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def check_families(families: Sequence[str]) -> list[str]:
    """``families`` as a list, or ValueError naming unknown ones and listing the valid ones; an
    entry may name a preset explicitly (``mlp-paper``, :mod:`dars.presets`)."""
    valid = available_routers()
    unknown = [f for f in families if split_router_name(f)[0] not in valid]
    if unknown:
        raise ValueError(
            f"unknown router famil(ies) {unknown}; valid: {', '.join(valid)} (each optionally "
            f"suffixed -{' or -'.join(PRESETS)})"
        )
    if not families:
        raise ValueError(f"no router family given; valid: {', '.join(valid)}")
    return list(families)


def check_supervisions(supervisions: Sequence[str]) -> list[str]:
    """``supervisions`` as a list, or ValueError naming unknown ones and listing the valid ones."""
    unknown = [s for s in supervisions if s not in SUPERVISIONS]
    if unknown:
        raise ValueError(f"unknown supervision(s) {unknown}; valid: {', '.join(SUPERVISIONS)}")
    if not supervisions:
        raise ValueError(f"no supervision given; valid: {', '.join(SUPERVISIONS)}")
    return list(supervisions)


# ------------------------------------------------------------------------------------------------
# routers and targets
# ------------------------------------------------------------------------------------------------
def folds_beta(router: Router) -> bool:
    """Whether ``router``'s family folds β into its training targets (its declared
    ``tags.folds_beta``: embedllm, rm_softmax), so each β needs its own fit."""
    return router.tags.folds_beta


def new_router(
    family: str,
    *,
    random_state: int,
    beta: float,
    lam_grid: Sequence[float] = (),
    preset: str = "tuned",
) -> Router:
    """An unfitted ``family`` router as the train stage builds it: preset ``preset`` (unless
    ``family`` names one, ``mlp-paper``), seeded with ``random_state``; families that fold β
    into training (``tags.folds_beta``: embedllm, rm_softmax) get ``beta``; families with λ as
    an input (``tags.lam_conditioned``: rm_softmax) get ``lam_grid`` (sorted, duplicates
    dropped) unless the preset fixes its own λ grid (the paper's)."""
    name, explicit = split_router_name(family)
    preset = explicit or preset
    router = make_router(name, preset=preset, random_state=random_state)
    # Families that fold β into their targets only define utilities at their own β.
    if router.tags.folds_beta:
        router.set_params(beta=beta)
    # A family that takes λ as an input trains on the λ values it will be asked about, so no
    # route is an extrapolation; a preset that sets its own grid (the authors') keeps it.
    if router.tags.lam_conditioned and lam_grid and "lam_grid" not in preset_params(name, preset):
        router.set_params(lam_grid=tuple(sorted(set(lam_grid))))
    return router


def training_targets(
    frame: pl.DataFrame, supervision: str, train_ids: Sequence[str], models: Sequence[str]
) -> tuple[list[int], Targets | BatchedTargets]:
    """Rows of the training set and their targets for ``supervision``.

    ``frame``: the supervision's rows of one dataset (``single_shot_draws`` rows for
    ``single_shot``, the ``dars`` table for ``dars``, that ablation's rows of ``ablations``
    otherwise). Returns the positions in ``train_ids`` of the queries the frame covers (split
    order kept) and the targets for those queries × ``models`` (pool order): ``BatchedTargets``
    over the sorted draws for ``single_shot``, ``Targets`` otherwise (σ = ``q_std``, none for
    ``without_risk``). A frame naming queries outside ``train_ids`` (supervision of another
    split or config) raises.
    """
    check_supervisions([supervision])
    present = set(frame["query_id"].unique().to_list())
    known = set(train_ids)
    extra = sorted(present - known)
    if extra:
        raise ValueError(
            f"supervision {supervision!r} has {len(extra)} queries that are not in the train "
            f"split (e.g. {extra[:3]}); was it produced with another config or seed?"
        )
    rows = [i for i, q in enumerate(train_ids) if q in present]
    if not rows:
        raise ValueError(f"supervision {supervision!r} covers no train query")
    qids = [train_ids[i] for i in rows]
    if supervision == "single_shot":
        return rows, batched_targets_from_frame(frame, qids, models)
    sigma_col = None if supervision == "without_risk" else "q_std"
    return rows, targets_from_frame(frame, qids, models, sigma_col=sigma_col)


class FittedRoutes(NamedTuple):
    """What :func:`fit_and_route` returns: the fitted ``routers`` (one per draw), their test
    ``routes`` (S, n_test) at (λ, β), ``lam_routes`` (len(lam_grid), S, n_test) or None, and the
    seconds spent fitting (``fit_s``) and routing the λ sweep (``lam_route_s``)."""

    routers: list[Router]
    routes: np.ndarray
    lam_routes: np.ndarray | None
    fit_s: float
    lam_route_s: float


def fit_and_route(
    router: Router,
    X: np.ndarray,
    targets: Targets | BatchedTargets,
    X_test: np.ndarray,
    *,
    lam: float,
    beta: float,
    lam_grid: Sequence[float] | None = None,
    exact: bool = True,
) -> FittedRoutes:
    """Fit ``router`` (a clone per draw of ``BatchedTargets``, in one ``fit_many``) on training
    embeddings ``X`` (rows = targets' queries) and route the test queries ``X_test`` at
    (``lam``, ``beta``) and, when ``lam_grid`` is given, at each of its λ (:func:`route_lam_grid`).
    ``router`` stays unfitted for batched targets (``fit`` fits it in place otherwise).

    ``exact``: passed to ``fit_many``: by default every draw's router equals its own
    independent fit (every built-in family batches exactly, so this costs nothing; a plugin
    family whose batched fit is approximate is then fitted draw by draw). False accepts an
    approximate batched fit where a family offers one."""
    t0 = time.perf_counter()
    if isinstance(targets, BatchedTargets):
        routers = router.fit_many(X, targets, exact=exact)
    else:
        routers = [router.fit(X, targets)]
    fit_s = time.perf_counter() - t0
    routes = route_many(routers, X_test, lam=lam, beta=beta)
    t0 = time.perf_counter()
    lam_routes = None if lam_grid is None else route_lam_grid(routers, X_test, lam_grid, beta)
    return FittedRoutes(routers, routes, lam_routes, fit_s, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------
# routes
# ------------------------------------------------------------------------------------------------
def routes_table(
    routes: np.ndarray, query_ids: Sequence[str], models: Sequence[str]
) -> pl.DataFrame:
    """Routes as rows from route indices (S, n_queries) into ``models``.

    Row (s, i) says draw s sends ``query_ids[i]`` to ``models[routes[s, i]]``; rows ordered by
    draw, then query order. Columns: :data:`ROUTE_COLUMNS`.
    """
    routes = np.asarray(routes)
    if routes.ndim != 2 or routes.shape[1] != len(query_ids):
        raise ValueError(f"routes must be (draws, {len(query_ids)}), got shape {routes.shape}")
    if routes.size and (routes.min() < 0 or routes.max() >= len(models)):
        raise ValueError(f"route indices must lie in [0, {len(models)}), got {routes.max()}")
    n_draws, n = routes.shape
    flat = routes.reshape(-1).astype(np.int32)
    names = np.asarray(list(models), dtype=object)
    return pl.DataFrame(
        {
            "draw": np.repeat(np.arange(n_draws, dtype=np.int32), n),
            "query_id": list(query_ids) * n_draws,
            "model": names[flat].tolist(),
            "model_index": flat,
        },
        schema=ROUTE_COLUMNS,
    )


def route_lam_grid(
    routers: Sequence[Router], X: np.ndarray, lams: Sequence[float], beta: float
) -> np.ndarray:
    """Routes of ``routers`` (one family) on ``X`` at every λ of ``lams``: int64 array
    (len(lams), S, n_queries); entry [l, s] equals ``route_many(routers, X, lams[l], beta)[s]``.

    Families that route by λ-free statistics (``tags.routes_by_stats``: they predict q, c, σ
    and do not take λ as an input) are evaluated once and only the argmax of
    ``Stats.utility(λ, β)`` is repeated, so a λ sweep costs far less than a prediction per λ;
    the others are asked once per λ (all routers at once where the family batches it, see
    ``Router._route_many``).
    """
    if not lams:
        raise ValueError("lams is empty: give at least one λ to route at")
    if routers[0].tags.routes_by_stats:
        stats = predict_stats_many(routers, X)
        return np.stack(
            [np.argmax(stats.utility(lam, beta), axis=-1).astype(np.int64) for lam in lams]
        )
    klass = _check_same_family(routers)
    return klass._route_many(routers, check_X(X, n_features=routers[0].n_features_in_), lams, beta)


def lam_routes_table(
    routes: np.ndarray, lams: Sequence[float], query_ids: Sequence[str], models: Sequence[str]
) -> pl.DataFrame:
    """λ-sweep routes as rows from route indices (len(lams), S, n_queries).

    Row (l, s, i) says that at λ = ``lams[l]`` draw s sends ``query_ids[i]`` to
    ``models[routes[l, s, i]]``; rows ordered by λ (as given), draw, query order. Columns:
    :data:`LAM_ROUTE_COLUMNS`.
    """
    routes = np.asarray(routes)
    if routes.ndim != 3 or routes.shape[0] != len(lams):
        raise ValueError(
            f"routes must be ({len(lams)} lams, draws, queries), got shape {routes.shape}"
        )
    parts = [
        routes_table(per_lam, query_ids, models).select(
            pl.lit(float(lam), pl.Float64).alias("lam"), pl.all()
        )
        for lam, per_lam in zip(lams, routes, strict=True)
    ]
    return pl.concat(parts)
