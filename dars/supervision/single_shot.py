"""Single-shot supervision: S seeded draws of one observation per (query, model).

This is the baseline the paper compares DARS against: each draw keeps one sampled outcome per
(query, model) and labels the query from it, as if only one generation had been collected. With a
single observation the spread is 0, so a draw's utility is ``u = q - lam * c``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from dars.supervision.core import (
    QUERY_KEY,
    Missing,
    QueryModelArrays,
    _check_weights,
    check_models,
    dataset_seed,
    prepare_observations,
    restrict_to_pool,
    to_arrays,
)
from dars.supervision.labels import _hard_label_frame, hard_label_arrays
from dars.utility import DEFAULT_LAM, utility, utility_expr

SLOT_KEY = ("dataset", "query_id", "rewrite_id", "decode_id")


class SingleShot(NamedTuple):
    """Result of :func:`single_shot`.

    ``draws``: one row per (draw, dataset, query_id, model), sorted, models in pool order:
    ``draw`` (int32, 0..S-1), ``dataset``, ``query_id``, ``model``, ``rewrite_id`` and
    ``decode_id`` (int32, which observation was drawn), ``q`` (its score), ``c`` (its normalised
    cost) and ``u`` = q − lam·c.

    ``labels``: one row per (draw, dataset, query_id), sorted: ``draw``, ``dataset``,
    ``query_id``, ``label``, ``label_index``, ``u``, ``n_tied`` (as in
    :func:`dars.supervision.labels.hard_labels`, ties broken by lower ``c`` then pool order).
    """

    draws: pl.DataFrame
    labels: pl.DataFrame


def single_shot(
    obs: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    draws: int = 100,
    seed: int = 0,
    lam: float = DEFAULT_LAM,
    missing: Missing = "error",
    cost_bounds: pl.DataFrame | None = None,
) -> SingleShot:
    """Draw ``draws`` single-shot supervision sets in one vectorised pass.

    In draw ``s`` every (query, model) cell independently keeps one of its ok observations,
    chosen uniformly at random (all rewrites × decodes are equally likely). The draws depend only
    on ``seed`` and the set of observations (not on row order); each dataset has its own random
    stream seeded from ``(seed, dataset)``, so its draws do not depend on the other datasets in
    the frame. Cost is normalised per dataset over the whole frame (or ``cost_bounds``). Queries
    lacking a pool model raise, or are dropped with ``missing="drop"``. See :class:`SingleShot`
    for the two returned frames.
    """
    names = check_models(models)
    _check_weights(lam=lam)
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    prep = restrict_to_pool(
        prepare_observations(obs, cost_bounds=cost_bounds), names, missing=missing
    )
    # Cells in (query, pool order) so the picked values reshape to (S, Q, M) directly.
    prep = prep.sort([*QUERY_KEY, "model_index", "rewrite_id", "decode_id"])
    cells = prep.group_by([*QUERY_KEY, "model_index"], maintain_order=True).agg(n=pl.len())
    n = cells["n"].to_numpy().astype(np.int64)
    starts = np.cumsum(n) - n
    n_models = len(names)
    n_queries = cells.height // n_models

    # One generator per dataset (cells are sorted by dataset, so each is a contiguous block).
    pick = np.empty((draws, n.size), dtype=np.int64)
    blocks = (
        cells.with_row_index("_i")
        .group_by("dataset", maintain_order=True)
        .agg(begin=pl.col("_i").min(), end=pl.col("_i").max() + 1)
    )
    for dataset, begin, end in blocks.iter_rows():
        rng = np.random.default_rng(dataset_seed(seed, dataset))
        pick[:, begin:end] = starts[begin:end] + rng.integers(
            0, n[begin:end], size=(draws, end - begin)
        )
    score = prep["score"].to_numpy()
    cost = prep["c_norm"].to_numpy()
    q = score[pick]
    c = cost[pick]
    u = utility(q, c, lam=lam)

    draw_col = np.repeat(np.arange(draws, dtype=np.int32), n.size)
    draws_frame = (
        prep.select("dataset", "query_id", "model", "rewrite_id", "decode_id")
        .gather(pick.ravel())
        .with_columns(
            q=pl.Series(q.ravel(), dtype=pl.Float64),
            c=pl.Series(c.ravel(), dtype=pl.Float64),
            u=pl.Series(u.ravel(), dtype=pl.Float64),
        )
        .select(pl.Series("draw", draw_col), pl.all())
    )

    shape = (draws, n_queries, n_models)
    best, n_tied = hard_label_arrays(u.reshape(shape), c.reshape(shape))
    u_best = np.take_along_axis(u.reshape(shape), best[..., None], axis=-1)[..., 0]
    query_keys = cells.select(QUERY_KEY).gather(np.arange(0, cells.height, n_models))
    labels = (
        query_keys.select(pl.all().gather(np.tile(np.arange(n_queries), draws)))
        .with_columns(
            label=pl.Series(
                np.asarray(names, dtype=object)[best.ravel()].tolist(), dtype=pl.String
            ),
            label_index=pl.Series(best.ravel(), dtype=pl.Int32),
            u=pl.Series(u_best.ravel(), dtype=pl.Float64),
            n_tied=pl.Series(n_tied.ravel(), dtype=pl.Int32),
        )
        .select(pl.Series("draw", np.repeat(np.arange(draws, dtype=np.int32), n_queries)), pl.all())
    )
    return SingleShot(draws=draws_frame, labels=labels)


def draws_to_arrays(
    draws: pl.DataFrame, models: Sequence[str], columns: Sequence[str] = ("q", "c")
) -> QueryModelArrays:
    """Dense per-draw arrays for routers: ``values[col]`` has shape (S, n_queries, n_models).

    ``keys`` is one row per (dataset, query_id) (sorted, axis 1); ``models`` is axis 2.
    ``draws`` is :attr:`SingleShot.draws` (every draw covers the same queries).
    """
    arr = to_arrays(draws, models, list(columns), index=("draw", *QUERY_KEY))
    n_draws = arr.keys["draw"].n_unique()
    n_queries = arr.keys.height // n_draws
    keys = arr.keys.head(n_queries).select(QUERY_KEY)
    values = {k: v.reshape(n_draws, n_queries, len(arr.models)) for k, v in arr.values.items()}
    return QueryModelArrays(keys=keys, models=arr.models, values=values)


def slot_labels(
    obs: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    lam: float = DEFAULT_LAM,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Single-shot labels per observation slot (the grid alternative to random draws).

    Observation index j is the slot (rewrite_id, decode_id): for each query, the j-th
    single-shot outcome of every model is its observation at that slot (the same input
    formulation and decode position for all models). Only slots where every pool model has an ok
    observation are used; a query missing a model therefore has no rows.
    Output: one row per (dataset, query_id, rewrite_id, decode_id), sorted, with ``label``,
    ``label_index``, ``u`` (= q − lam·c of the winner) and ``n_tied`` as in
    :func:`dars.supervision.labels.hard_labels`.
    """
    names = check_models(models)
    _check_weights(lam=lam)
    prep = restrict_to_pool(
        prepare_observations(obs, cost_bounds=cost_bounds), names, missing="drop"
    ).with_columns(u=utility_expr("score", "c_norm", lam=lam))
    arr = to_arrays(prep, names, ["u", "c_norm"], index=SLOT_KEY, missing="drop")
    return _hard_label_frame(arr.keys, arr.models, arr["u"], arr["c_norm"])
