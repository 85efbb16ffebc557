"""Training targets for routers, as plain numpy arrays, and the adapter from supervision frames.

Rows are training queries in a fixed order, columns are the models of the pool in a fixed order.
``q`` is the quality a model reaches on a query (a mean score in [0, 1] under DARS, one 0/1 or
partial-credit score under single-shot supervision), ``c`` the min-max normalised cost in [0, 1]
and ``sigma`` the spread of quality (standard deviation with ddof=1; ``None`` when the supervision
has no spread, as for single-shot labels).

The batched form stacks S draws of targets for the same queries and models along a leading axis, so
routers can train on all draws at once (``Router.fit_many``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from dars.utility import DEFAULT_BETA, DEFAULT_LAM, utility

__all__ = [
    "BatchedTargets",
    "Targets",
    "batched_targets_from_frame",
    "targets_from_frame",
]


def _as_float_array(name: str, value: object, ndim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"targets.{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"targets.{name} has a non-finite value at index {bad}")
    return arr


def _check_ranges(q: np.ndarray, c: np.ndarray, sigma: np.ndarray | None) -> None:
    # Quality must be a probability-like score: BCE-trained families depend on it.
    for name, arr, lo, hi in (("q", q, 0.0, 1.0), ("c", c, 0.0, 1.0)):
        outside = (arr < lo) | (arr > hi)
        if outside.any():
            idx = np.argwhere(outside)[0].tolist()
            raise ValueError(
                f"targets.{name} must lie in [{lo}, {hi}] (cost min-max normalised within a "
                f"dataset); index {idx} holds {float(arr[tuple(idx)])}"
            )
    if sigma is not None and (sigma < 0).any():
        idx = np.argwhere(sigma < 0)[0].tolist()
        raise ValueError(
            f"targets.sigma must be >= 0; index {idx} holds {float(sigma[tuple(idx)])}"
        )


def _normalise_fields(obj: Targets | BatchedTargets, ndim: int) -> None:
    """Validate and store ``obj``'s q, c, sigma (arrays of ``ndim`` dims, models last) and names.
    Shared by ``Targets`` (ndim 2) and ``BatchedTargets`` (ndim 3, draws first)."""
    q = _as_float_array("q", obj.q, ndim)
    c = _as_float_array("c", obj.c, ndim)
    sigma = None if obj.sigma is None else _as_float_array("sigma", obj.sigma, ndim)
    for name, arr in (("c", c), ("sigma", sigma)):
        if arr is not None and arr.shape != q.shape:
            raise ValueError(f"targets.{name} has shape {arr.shape}, q has {q.shape}")
    if ndim == 3 and q.shape[0] < 1:
        raise ValueError("batched targets need at least one draw")
    if q.shape[-1] < 2:
        raise ValueError(f"routing needs at least 2 models, targets have {q.shape[-1]}")
    _check_ranges(q, c, sigma)
    models = _check_models(obj.models, q.shape[-1])
    object.__setattr__(obj, "q", q)
    object.__setattr__(obj, "c", c)
    object.__setattr__(obj, "sigma", sigma)
    object.__setattr__(obj, "models", models)


@dataclass(frozen=True)
class Targets:
    """Per-(query, model) targets for one training run: arrays of shape (n_queries, n_models).

    ``models`` optionally names the columns (pool order); routers keep it to report routes by name.
    """

    q: np.ndarray
    c: np.ndarray
    sigma: np.ndarray | None = None
    models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _normalise_fields(self, 2)

    @property
    def n_queries(self) -> int:
        return self.q.shape[0]

    @property
    def n_models(self) -> int:
        return self.q.shape[1]

    def utility(self, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA) -> np.ndarray:
        """u = q − λc − βσ per (query, model); the σ term is absent when sigma is None."""
        return utility(self.q, self.c, self.sigma, lam=lam, beta=beta)


@dataclass(frozen=True)
class BatchedTargets:
    """S draws of targets for the same queries and models: arrays of shape (S, n_queries, n_models).

    Draw s is ``batched.draw(s)``; every draw has a sigma or none does.
    """

    q: np.ndarray
    c: np.ndarray
    sigma: np.ndarray | None = None
    models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _normalise_fields(self, 3)

    @property
    def n_draws(self) -> int:
        return self.q.shape[0]

    @property
    def n_queries(self) -> int:
        return self.q.shape[1]

    @property
    def n_models(self) -> int:
        return self.q.shape[2]

    def draw(self, s: int) -> Targets:
        return Targets(
            q=self.q[s],
            c=self.c[s],
            sigma=None if self.sigma is None else self.sigma[s],
            models=self.models,
        )

    def __len__(self) -> int:
        return self.n_draws

    @classmethod
    def stack(cls, targets: Sequence[Targets]) -> BatchedTargets:
        """Stack single-draw targets (same shape, same models, all or none with sigma)."""
        if not targets:
            raise ValueError("cannot stack an empty list of targets")
        has_sigma = {t.sigma is not None for t in targets}
        if len(has_sigma) != 1:
            raise ValueError("cannot stack targets where only some draws have sigma")
        models = {t.models for t in targets}
        if len(models) != 1:
            raise ValueError(f"cannot stack targets over different model lists: {sorted(models)}")
        return cls(
            q=np.stack([t.q for t in targets]),
            c=np.stack([t.c for t in targets]),
            sigma=np.stack([t.sigma for t in targets]) if targets[0].sigma is not None else None,
            models=targets[0].models,
        )


def _check_models(models: Sequence[str] | None, n_models: int) -> tuple[str, ...] | None:
    if models is None:
        return None
    models = tuple(str(m) for m in models)
    if len(models) != n_models:
        raise ValueError(f"targets.models names {len(models)} models, arrays have {n_models}")
    if len(set(models)) != len(models):
        raise ValueError(f"targets.models has duplicates: {models}")
    return models


def _index_frame(name: str, values: Sequence[str]) -> pl.DataFrame:
    values = [str(v) for v in values]
    if len(set(values)) != len(values):
        raise ValueError(f"{name} order has duplicates")
    return pl.DataFrame(
        {name: values, f"_{name}_idx": np.arange(len(values), dtype=np.int64)},
        schema={name: pl.String, f"_{name}_idx": pl.Int64},
    )


def _scatter(
    frame: pl.DataFrame,
    keys: dict[str, Sequence[str]],
    value_columns: Sequence[str],
    what: str,
) -> dict[str, np.ndarray]:
    """Place the long frame's values into dense arrays indexed by the given key orders.

    Raises naming a missing or duplicated key combination, and naming unknown ids.
    """
    missing_cols = [c for c in [*keys, *value_columns] if c not in frame.columns]
    if missing_cols:
        raise ValueError(f"{what} frame lacks columns {missing_cols}; it has {frame.columns}")
    df = frame.select([pl.col(k).cast(pl.String) for k in keys] + list(value_columns))
    for k, order in keys.items():
        # Inner join: rows for other queries/models are not requested; a requested id absent from
        # the frame is caught by the completeness check below, so a typo cannot pass silently.
        df = df.join(_index_frame(k, order), on=k, how="inner")
    shape = tuple(len(order) for order in keys.values())
    idx_cols = [f"_{k}_idx" for k in keys]
    dup = df.group_by(idx_cols).len().filter(pl.col("len") > 1)
    if dup.height:
        row = dup.row(0, named=True)
        key = {k: list(keys[k])[row[f"_{k}_idx"]] for k in keys}
        raise ValueError(f"{what} frame has {row['len']} rows for {key}; expected one")
    if df.height != int(np.prod(shape)):
        present = np.zeros(shape, dtype=bool)
        present[tuple(df[c].to_numpy() for c in idx_cols)] = True
        first = np.argwhere(~present)[0]
        key = {k: list(keys[k])[i] for k, i in zip(keys, first, strict=True)}
        raise ValueError(
            f"{what} frame has no row for {key} ({(~present).sum()} of {present.size} "
            "combinations missing)"
        )
    index = tuple(df[c].to_numpy() for c in idx_cols)
    out = {}
    for col in value_columns:
        values = df[col].cast(pl.Float64).to_numpy()
        if np.isnan(values).any():
            first = int(np.flatnonzero(np.isnan(values))[0])
            key = {k: df[k][first] for k in keys}
            raise ValueError(f"{what} frame has a null/NaN {col!r} for {key}")
        arr = np.empty(shape, dtype=np.float64)
        arr[index] = values
        out[col] = arr
    return out


def _single_dataset(frame: pl.DataFrame, what: str) -> None:
    if "dataset" in frame.columns:
        n = frame["dataset"].n_unique()
        if n > 1:
            raise ValueError(
                f"{what} frame mixes {n} datasets ({frame['dataset'].unique().to_list()[:5]}); "
                "filter to one dataset first"
            )


def targets_from_frame(
    frame: pl.DataFrame,
    query_ids: Sequence[str],
    models: Sequence[str],
    *,
    q_col: str = "q_mean",
    c_col: str = "c_mean",
    sigma_col: str | None = "q_std",
) -> Targets:
    """Turn a long supervision frame of one dataset into ``Targets``.

    ``frame``: one row per (query_id, model), with columns ``query_id``, ``model``, ``q_col`` (mean
    quality over the K×M observations), ``c_col`` (mean min-max normalised cost) and, unless
    ``sigma_col`` is None, ``sigma_col`` (quality std, ddof=1). An optional ``dataset`` column must
    hold a single value. Row i of the result is ``query_ids[i]``, column j is ``models[j]``; rows of
    the frame for other queries or models are ignored; a missing or duplicated (query, model) pair
    raises naming it.
    """
    _single_dataset(frame, "supervision")
    cols = [q_col, c_col] + ([sigma_col] if sigma_col is not None else [])
    arrays = _scatter(frame, {"query_id": query_ids, "model": models}, cols, what="supervision")
    return Targets(
        q=arrays[q_col],
        c=arrays[c_col],
        sigma=arrays[sigma_col] if sigma_col is not None else None,
        models=tuple(models),
    )


def batched_targets_from_frame(
    frame: pl.DataFrame,
    query_ids: Sequence[str],
    models: Sequence[str],
    *,
    draws: Sequence[int] | None = None,
    q_col: str = "q",
    c_col: str = "c",
    sigma_col: str | None = None,
) -> BatchedTargets:
    """Turn a long single-shot draws frame of one dataset into ``BatchedTargets``.

    ``frame``: one row per (draw, query_id, model) with columns ``draw``, ``query_id``, ``model``,
    ``q_col`` (the one drawn score) and ``c_col`` (its normalised cost); ``sigma_col`` if the draws
    carry a spread. Draw axis order is ``draws`` (default: sorted distinct draw values).
    """
    _single_dataset(frame, "draws")
    if "draw" not in frame.columns:
        raise ValueError(f"draws frame lacks column 'draw'; it has {frame.columns}")
    if draws is None:
        draws = sorted(frame["draw"].unique().to_list())
    cols = [q_col, c_col] + ([sigma_col] if sigma_col is not None else [])
    arrays = _scatter(
        frame,
        {"draw": [str(d) for d in draws], "query_id": query_ids, "model": models},
        cols,
        what="draws",
    )
    return BatchedTargets(
        q=arrays[q_col],
        c=arrays[c_col],
        sigma=arrays[sigma_col] if sigma_col is not None else None,
        models=tuple(models),
    )
