"""Routing labels from utilities: hard (argmax), soft (softmax), pairwise and listwise.

All four use one total order of the pool per query, so they never contradict each other:

1. higher utility ``u`` first;
2. among models whose utilities are equal to ``TIE_DECIMALS`` decimals (ties), lower cost first
   (``c_mean`` for aggregates, ``c`` for single observations), also compared to ``TIE_DECIMALS``
   decimals;
3. then pool order (the ``models`` list: earlier wins).

Rounding before comparing makes ties robust to last-bit floating-point noise (e.g. two models
with identical statistics computed in different summation orders). Every (query, model) cell of
the pool must be present; ``missing="drop"`` drops queries that lack a model instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from dars.supervision.core import QUERY_KEY, Missing, to_arrays

TIE_DECIMALS = 9
TAU = 0.1  # softmax temperature for soft labels (our default; the paper does not fix one)


def rank_order(u: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Model indices sorted best first along the last axis (the tie rule of this module).

    ``u`` and ``c`` have shape (..., n_models); the result has the same shape and
    ``rank_order(u, c)[..., 0]`` is the hard label.
    """
    u = np.asarray(u, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if u.shape != c.shape:
        raise ValueError(f"u and c must have the same shape, got {u.shape} and {c.shape}")
    pool = np.broadcast_to(np.arange(u.shape[-1]), u.shape)
    # lexsort: last key is primary. Adding 0.0 turns -0.0 into 0.0 so it ties with +0.0.
    return np.lexsort((pool, np.round(c, TIE_DECIMALS) + 0.0, -np.round(u, TIE_DECIMALS) + 0.0))


def hard_label_arrays(u: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label index, number of models tied on utility with the winner) along the last axis."""
    best = rank_order(u, c)[..., 0]
    u_r = np.round(np.asarray(u, dtype=np.float64), TIE_DECIMALS)
    u_best = np.take_along_axis(u_r, best[..., None], axis=-1)
    return best, (u_r == u_best).sum(axis=-1)


def _hard_label_frame(
    keys: pl.DataFrame, models: Sequence[str], u: np.ndarray, c: np.ndarray
) -> pl.DataFrame:
    best, n_tied = hard_label_arrays(u, c)
    rows = np.arange(u.shape[0])
    return keys.with_columns(
        label=pl.Series(np.asarray(models, dtype=object)[best].tolist(), dtype=pl.String),
        label_index=pl.Series(best, dtype=pl.Int32),
        u=pl.Series(u[rows, best], dtype=pl.Float64),
        n_tied=pl.Series(n_tied, dtype=pl.Int32),
    )


def _long(keys: pl.DataFrame, models: Sequence[str]) -> pl.DataFrame:
    n, m = keys.height, len(models)
    return keys.select(pl.all().gather(np.repeat(np.arange(n), m))).with_columns(
        model=pl.Series(np.tile(np.asarray(models, dtype=object), n).tolist(), dtype=pl.String),
        model_index=pl.Series(np.tile(np.arange(m), n), dtype=pl.Int32),
    )


def hard_labels(
    agg: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    missing: Missing = "error",
    index: Sequence[str] = QUERY_KEY,
    utility_col: str = "u",
    cost_col: str = "c_mean",
) -> pl.DataFrame:
    """The best model per query.

    Input: one row per (index…, model) with ``utility_col`` and ``cost_col`` (an aggregate frame,
    or single-shot draws with ``index=("draw", "dataset", "query_id"), cost_col="c"``).
    Output: one row per index value (sorted): the index columns, ``label`` (model name),
    ``label_index`` (int32, position in ``models``), ``u`` (the winner's utility) and ``n_tied``
    (int32, models whose utility equals the winner's to ``TIE_DECIMALS`` decimals, ≥ 1).
    """
    arr = to_arrays(agg, models, [utility_col, cost_col], index=index, missing=missing)
    return _hard_label_frame(arr.keys, arr.models, arr[utility_col], arr[cost_col])


def soft_labels(
    agg: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    tau: float = TAU,
    missing: Missing = "error",
    index: Sequence[str] = QUERY_KEY,
    utility_col: str = "u",
) -> pl.DataFrame:
    """Softmax of ``u / tau`` over the pool of each query.

    Output: one row per (index…, model) in pool order: the index columns, ``model``,
    ``model_index`` (int32) and ``prob`` (float64; sums to 1 over the models of a query).
    """
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    arr = to_arrays(agg, models, [utility_col], index=index, missing=missing)
    z = arr[utility_col] / tau
    z = np.exp(z - z.max(axis=1, keepdims=True))
    prob = z / z.sum(axis=1, keepdims=True)
    return _long(arr.keys, arr.models).with_columns(prob=pl.Series(prob.ravel(), dtype=pl.Float64))


def listwise_ranking(
    agg: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    missing: Missing = "error",
    index: Sequence[str] = QUERY_KEY,
    utility_col: str = "u",
    cost_col: str = "c_mean",
) -> pl.DataFrame:
    """Full ranking of the pool per query.

    Output: one row per (index…, model) in pool order: the index columns, ``model``,
    ``model_index`` (int32), ``u`` and ``rank`` (int32, 1 = best; a permutation of 1..n_models
    per query following the module's tie rule, so rank 1 is the hard label).
    """
    arr = to_arrays(agg, models, [utility_col, cost_col], index=index, missing=missing)
    u = arr[utility_col]
    order = rank_order(u, arr[cost_col])
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, len(arr.models) + 1)[None, :], axis=1)
    return _long(arr.keys, arr.models).with_columns(
        u=pl.Series(u.ravel(), dtype=pl.Float64), rank=pl.Series(ranks.ravel(), dtype=pl.Int32)
    )


def pairwise_preferences(
    agg: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    missing: Missing = "error",
    index: Sequence[str] = QUERY_KEY,
    utility_col: str = "u",
    cost_col: str = "c_mean",
) -> pl.DataFrame:
    """Every ordered pair of distinct pool models per query.

    Output: one row per (index…, model_a, model_b) with a ≠ b (n·(n-1) rows per query, a-major in
    pool order): the index columns, ``model_a``, ``model_b``, ``margin`` = u_a − u_b (float64) and
    ``a_preferred`` (bool: a ranks above b in :func:`listwise_ranking`, so ties are broken by
    cost then pool order and exactly one of (a, b), (b, a) is preferred).
    """
    arr = to_arrays(agg, models, [utility_col, cost_col], index=index, missing=missing)
    u = arr[utility_col]
    n_models = len(arr.models)
    order = rank_order(u, arr[cost_col])
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(n_models)[None, :], axis=1)
    a, b = np.nonzero(~np.eye(n_models, dtype=bool))
    n = arr.keys.height
    names = np.asarray(arr.models, dtype=object)
    return arr.keys.select(pl.all().gather(np.repeat(np.arange(n), a.size))).with_columns(
        model_a=pl.Series(np.tile(names[a], n).tolist(), dtype=pl.String),
        model_b=pl.Series(np.tile(names[b], n).tolist(), dtype=pl.String),
        margin=pl.Series((u[:, a] - u[:, b]).ravel(), dtype=pl.Float64),
        a_preferred=pl.Series((ranks[:, a] < ranks[:, b]).ravel(), dtype=pl.Boolean),
    )
