"""Single-shot supervision: S seeded draws of one observation per (query, model).

This is the baseline the paper compares DARS against: each draw keeps one sampled outcome per
(query, model) and labels the query from it, as if only one generation had been collected. With a
single observation the spread is 0, so a draw's utility is ``u = q - lam * c``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from dars.supervision.core import (
    QUERY_KEY,
    Missing,
    ObservationsLike,
    QueryModelArrays,
    _check_weights,
    _prepared,
    check_models,
    dataset_seed,
    restrict_to_pool,
    string_keys,
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
    obs: ObservationsLike,
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
    plan = single_shot_plan(
        obs, models, draws=draws, seed=seed, lam=lam, missing=missing, cost_bounds=cost_bounds
    )
    chunks = list(plan.chunks(draws))
    return SingleShot(
        draws=pl.concat([c.draws for c in chunks]), labels=pl.concat([c.labels for c in chunks])
    )


class SingleShotPlan(NamedTuple):
    """The cells of a single-shot supervision, ready to draw in blocks of draws.

    Built by :func:`single_shot_plan`. ``cells`` has one row per (dataset, query_id, model) in
    (query, pool order) with ``n`` (its ok observations) and ``start`` (its first row in
    ``rows``); ``rows`` holds the cells' observations (``rewrite_id, decode_id``), cell after
    cell, with their ``score`` and ``c_norm`` as numpy arrays. :meth:`chunks` yields the draws
    as :class:`SingleShot` frames, a block of draws at a time, so a caller writing them to disk
    never holds all S draws of a large frame (each draw is a row index into ``rows``).
    """

    names: list[str]
    draws: int
    seed: int
    lam: float
    cells: pl.DataFrame
    rows: pl.DataFrame
    score: np.ndarray
    cost: np.ndarray
    blocks: list[tuple[str, int, int]]

    @property
    def n_queries(self) -> int:
        return self.cells.height // len(self.names)

    def query_keys(self) -> pl.DataFrame:
        """One row per query (dataset, query_id; String), in the order of the draws."""
        return string_keys(
            self.cells.select(QUERY_KEY).gather(np.arange(0, self.cells.height, len(self.names)))
        )

    def picks(self, block: int) -> Iterator[np.ndarray]:
        """Row indices into ``rows``, shape (draws in block, n cells), block after block: one
        generator per dataset, drawing exactly the numbers of a single (S, n cells) call."""
        n = self.cells["n"].to_numpy().astype(np.int64)
        starts = self.cells["start"].to_numpy().astype(np.int64)
        rngs = [
            (np.random.default_rng(dataset_seed(self.seed, d)), b, e) for d, b, e in self.blocks
        ]
        for first in range(0, self.draws, block):
            size = min(block, self.draws - first)
            pick = np.empty((size, n.size), dtype=np.int64)
            for rng, begin, end in rngs:
                pick[:, begin:end] = starts[begin:end] + rng.integers(
                    0, n[begin:end], size=(size, end - begin)
                )
            yield pick

    def chunks(self, block: int) -> Iterator[SingleShotChunk]:
        """The draws ``block`` at a time (see :class:`SingleShotChunk`)."""
        names = self.names
        n_models = len(names)
        n_queries = self.n_queries
        n_cells = self.cells.height
        keys = self.rows.select("dataset", "query_id", "model", "rewrite_id", "decode_id")
        query_keys = self.query_keys()
        label_names = pl.Series(names, dtype=pl.String)
        first = 0
        for pick in self.picks(block):
            size = pick.shape[0]
            q = self.score[pick]
            c = self.cost[pick]
            u = utility(q, c, lam=self.lam)
            draw_ids = np.arange(first, first + size, dtype=np.int32)
            draws_frame = string_keys(
                keys.gather(pick.ravel())
                .with_columns(
                    q=pl.Series(q.ravel(), dtype=pl.Float64),
                    c=pl.Series(c.ravel(), dtype=pl.Float64),
                    u=pl.Series(u.ravel(), dtype=pl.Float64),
                )
                .select(pl.Series("draw", np.repeat(draw_ids, n_cells)), pl.all())
            )
            shape = (size, n_queries, n_models)
            best, n_tied = hard_label_arrays(u.reshape(shape), c.reshape(shape))
            u_best = np.take_along_axis(u.reshape(shape), best[..., None], axis=-1)[..., 0]
            labels = (
                query_keys.select(pl.all().gather(np.tile(np.arange(n_queries), size)))
                .with_columns(
                    label=label_names.gather(best.ravel()),
                    label_index=pl.Series(best.ravel(), dtype=pl.Int32),
                    u=pl.Series(u_best.ravel(), dtype=pl.Float64),
                    n_tied=pl.Series(n_tied.ravel(), dtype=pl.Int32),
                )
                .select(pl.Series("draw", np.repeat(draw_ids, n_queries)), pl.all())
            )
            yield SingleShotChunk(draws_frame, labels, best.reshape(size, n_queries))
            first += size


class SingleShotChunk(NamedTuple):
    """A block of consecutive draws: the rows of :attr:`SingleShot.draws` and
    :attr:`SingleShot.labels` for those draws, and ``label_index`` as an (draws, n_queries)
    array (queries in the order of :meth:`SingleShotPlan.query_keys`)."""

    draws: pl.DataFrame
    labels: pl.DataFrame
    label_index: np.ndarray


def single_shot_plan(
    obs: ObservationsLike,
    models: Sequence[str],
    *,
    draws: int = 100,
    seed: int = 0,
    lam: float = DEFAULT_LAM,
    missing: Missing = "error",
    cost_bounds: pl.DataFrame | None = None,
) -> SingleShotPlan:
    """Validate the arguments of :func:`single_shot` and lay out its cells (see
    :class:`SingleShotPlan`); nothing is drawn yet."""
    names = check_models(models)
    _check_weights(lam=lam)
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    prep = restrict_to_pool(_prepared(obs, cost_bounds), names, missing=missing)
    # Cells in (query, pool order) so the picked values reshape to (S, Q, M) directly.
    if "_q" in prep.columns:  # coded: canonical order, then a stable sort on one integer key
        cell = pl.col("_q") * len(names) + pl.col("model_index")
        prep = prep.sort("_k").sort(cell, maintain_order=True)
    else:
        prep = prep.sort([*QUERY_KEY, "model_index", "rewrite_id", "decode_id"])
    cells = prep.group_by([*QUERY_KEY, "model_index"], maintain_order=True).agg(n=pl.len())
    n = cells["n"].to_numpy().astype(np.int64)
    cells = cells.with_columns(start=pl.Series(np.cumsum(n) - n, dtype=pl.Int64))
    # One generator per dataset (cells are sorted by dataset, so each is a contiguous block).
    blocks = [
        (str(d), int(b), int(e))
        for d, b, e in cells.with_row_index("_i")
        .group_by("dataset", maintain_order=True)
        .agg(begin=pl.col("_i").min(), end=pl.col("_i").max() + 1)
        .iter_rows()
    ]
    return SingleShotPlan(
        names=names,
        draws=int(draws),
        seed=seed,
        lam=lam,
        cells=cells,
        rows=prep.select("dataset", "query_id", "model", "rewrite_id", "decode_id"),
        score=prep["score"].to_numpy(),
        cost=prep["c_norm"].to_numpy(),
        blocks=blocks,
    )


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
    obs: ObservationsLike,
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
    prep = restrict_to_pool(_prepared(obs, cost_bounds), names, missing="drop").with_columns(
        u=utility_expr("score", "c_norm", lam=lam)
    )
    spans = [
        float(prep[c].max()) - float(prep[c].min()) + 1  # type: ignore[arg-type]
        for c in ("_q", "rewrite_id", "decode_id")
        if c in prep.columns
    ]
    if "_q" not in prep.columns or float(np.prod(spans)) >= 2.0**62:
        arr = to_arrays(prep, names, ["u", "c_norm"], index=SLOT_KEY, missing="drop")
        return _hard_label_frame(arr.keys, arr.models, arr["u"], arr["c_norm"])
    # Coded frame: one integer per slot, increasing with (dataset, query_id, rewrite, decode);
    # a slot is complete when every pool model has a row there (keys are unique).
    slot = np.zeros(prep.height, dtype=np.int64)
    for col in ("_q", "rewrite_id", "decode_id"):
        values = prep[col].to_numpy().astype(np.int64)
        lo = int(values.min())
        slot = slot * (int(values.max()) - lo + 1) + (values - lo)
    slots, first, inv = np.unique(slot, return_index=True, return_inverse=True)
    complete = np.bincount(inv, minlength=slots.size) == len(names)
    row_of_slot = np.cumsum(complete) - 1
    keep = complete[inv]
    rows = row_of_slot[inv[keep]]
    cols = prep["model_index"].to_numpy()[keep]
    values = {}
    for col in ("u", "c_norm"):
        arr = np.empty((int(complete.sum()), len(names)), dtype=np.float64)
        arr[rows, cols] = prep[col].to_numpy()[keep]
        values[col] = arr
    keys = string_keys(prep.select(SLOT_KEY).gather(first[complete]))
    return _hard_label_frame(keys, names, values["u"], values["c_norm"])
