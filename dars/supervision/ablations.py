"""The Table-2 ablations (supervisions of the paper's ablation) and the K×M sub-grids.

Every ablation takes the observation frame and returns the aggregate schema of
:func:`dars.supervision.core.aggregate` (:data:`AGGREGATE_COLUMNS`: one row per (dataset,
query_id, model) with n_obs, n_rewrites, q_mean, q_std, c_mean, u), so labels, routers and
reports treat them alike. Cost is always normalised on the full frame before any subset is taken,
so all ablations measure cost on the same scale. ``q_std`` holds the σ that enters ``u``.

=================  ==========================================================================
supervision        observations used / risk term
=================  ==========================================================================
``full_dars``      all K×M; σ = std (ddof=1) over all of them; β as given
``input_only``     one decode per rewrite (the lowest decode_id: decode 0 unless it failed);
                   σ = std over those K observations
``output_only``    the decodes of one formulation per cell: the original query (rewrite -1)
                   where collected for that (query, model), else its lowest rewrite_id
                   (rewrite 0); σ = std over those M observations
``without_risk``   all K×M; β = 0 (q_std still reported)
``rewrite_risk``   all K×M; σ = std (ddof=1) of the per-rewrite mean scores
``decoding_risk``  all K×M; σ = unweighted mean over rewrites of the within-rewrite std
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from dars.supervision.core import (
    CELL_KEY,
    QUERY_KEY,
    ObservationsLike,
    _aggregate_prepared,
    _prepared,
    dataset_seed,
    string_keys,
)
from dars.utility import DEFAULT_BETA, DEFAULT_LAM

#: An ablation: observation frame (keyword-only ``lam``, ``beta``, ``cost_bounds``) → aggregates.
Ablation = Callable[..., pl.DataFrame]


def full_dars(
    obs: ObservationsLike,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Full DARS: all observations, σ over all of them (see module table)."""
    prep = _prepared(obs, cost_bounds)
    return _aggregate_prepared(prep, lam=lam, beta=beta, risk="all")


def input_only(
    obs: ObservationsLike,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Input-side only: one decode (the lowest decode_id) per rewrite (see module table)."""
    prep = _prepared(obs, cost_bounds)
    # prep is sorted by decode_id within each rewrite, so the first row is the lowest decode.
    first = prep.filter(
        pl.col("decode_id") == pl.col("decode_id").min().over([*CELL_KEY, "rewrite_id"])
    )
    return _aggregate_prepared(first, lam=lam, beta=beta, risk="all")


def output_only(
    obs: ObservationsLike,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Output-side only: the decodes of one fixed formulation (see module table)."""
    prep = _prepared(obs, cost_bounds)
    rewrite = pl.col("rewrite_id")
    has_original = (rewrite == -1).any().over(CELL_KEY)
    chosen = (
        pl.when(has_original)
        .then(pl.lit(-1, pl.Int32))
        .otherwise(rewrite.filter(rewrite >= 0).min().over(CELL_KEY))
    )
    return _aggregate_prepared(prep.filter(rewrite == chosen), lam=lam, beta=beta, risk="all")


def without_risk(
    obs: ObservationsLike,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All observations with β = 0 (the ``beta`` argument is accepted and ignored)."""
    del beta  # uniform signature across ablations; this ablation's point is β = 0
    prep = _prepared(obs, cost_bounds)
    return _aggregate_prepared(prep, lam=lam, beta=0.0, risk="all")


def rewrite_risk(
    obs: ObservationsLike,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All observations; σ = spread of the per-rewrite means (see module table)."""
    prep = _prepared(obs, cost_bounds)
    return _aggregate_prepared(prep, lam=lam, beta=beta, risk="rewrite")


def decoding_risk(
    obs: ObservationsLike,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All observations; σ = mean within-rewrite spread (see module table)."""
    prep = _prepared(obs, cost_bounds)
    return _aggregate_prepared(prep, lam=lam, beta=beta, risk="decode")


#: Supervision name → ablation function, in the row order of the paper's Table 2 (single-shot
#: is :func:`dars.supervision.single_shot.single_shot`, not an aggregate).
ABLATIONS: dict[str, Ablation] = {
    "input_only": input_only,
    "output_only": output_only,
    "without_risk": without_risk,
    "rewrite_risk": rewrite_risk,
    "decoding_risk": decoding_risk,
    "full_dars": full_dars,
}


def get_ablation(name: str) -> Ablation:
    """The ablation function of supervision ``name``; unknown names list the valid ones."""
    try:
        return ABLATIONS[name]
    except KeyError:
        raise KeyError(f"unknown ablation {name!r}; valid: {', '.join(ABLATIONS)}") from None


def _random_keys(keys: pl.DataFrame, seed: int, salt: int) -> pl.DataFrame:
    # Keys are sorted first so the random numbers attach to the same items whatever the row order;
    # one stream per dataset so a dataset's sub-grid does not depend on the others.
    parts = []
    for (dataset,), part in keys.sort(keys.columns).group_by("dataset", maintain_order=True):
        rng = np.random.default_rng(dataset_seed(seed, dataset, salt))
        parts.append(part.with_columns(_r=pl.Series(rng.random(part.height), dtype=pl.Float64)))
    return pl.concat(parts)


def subgrid_observations(
    obs: ObservationsLike,
    *,
    k: int,
    m: int,
    seed: int = 0,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """A seeded k-rewrites × m-decodes subset of the observations.

    For each (dataset, query_id), ``k`` formulations are chosen at random among the rewrite ids
    observed for that query (any model; the original -1 counts as a formulation when collected),
    and for each chosen formulation ``m`` decode ids among those observed. The same rewrites and
    decode slots are kept for every model of the query, so models stay compared on the same inputs.
    Choices are seeded per dataset from ``(seed, dataset)``.
    A query with fewer formulations (or a rewrite with fewer decodes) keeps all it has; ``k`` or
    ``m`` larger than any query's count raises. Returns the prepared rows (see
    :func:`dars.supervision.core.prepare_observations`, ``c_norm`` normalised on the full frame
    or ``cost_bounds``) that were kept.
    """
    prep = _prepared(obs, cost_bounds)
    return string_keys(_subgrid(prep, k=k, m=m, seed=seed).drop("_k", "_q"))


def _subgrid(
    prep: pl.DataFrame, *, k: int, m: int, seed: int, ranks: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The rows of :func:`subgrid_observations` from a coded frame, still coded. ``ranks``:
    :func:`subgrid_ranks` of ``prep`` and ``seed``, when already computed."""
    for name, value in (("k", k), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    ranks = subgrid_ranks(prep, seed) if ranks is None else ranks
    k_max, m_max = ranks["_k_max"].item(0), ranks["_m_max"].item(0)
    if k > k_max:
        raise ValueError(f"k={k} exceeds the largest number of formulations of any query ({k_max})")
    if m > m_max:
        raise ValueError(f"m={m} exceeds the largest number of decodes of any rewrite ({m_max})")
    return prep.filter((ranks["_rank_rw"] <= k) & (ranks["_rank_dec"] <= m))


def subgrid_ranks(prep: pl.DataFrame, seed: int) -> pl.DataFrame:
    """For each row of a prepared frame, the seeded rank of its formulation among its query's
    (``_rank_rw``, 1 = chosen first) and of its decode among its (query, formulation)'s
    (``_rank_dec``), with the largest counts ``_k_max`` and ``_m_max``: the k×m sub-grid is the
    rows with ``_rank_rw <= k`` and ``_rank_dec <= m``, so every protocol shares one drawing.
    Rows are aligned with ``prep``."""
    rw_key = [*QUERY_KEY, "rewrite_id"]
    dec_key = [*rw_key, "decode_id"]
    rewrites = prep.select(rw_key).unique()
    decodes = prep.select(dec_key).unique()
    kept_rw = _random_keys(rewrites, seed, 0).select(
        *rw_key, _rank_rw=pl.col("_r").rank("ordinal").over(QUERY_KEY)
    )
    kept_dec = _random_keys(decodes, seed, 1).select(
        *dec_key, _rank_dec=pl.col("_r").rank("ordinal").over(rw_key)
    )
    k_max = rewrites.group_by(QUERY_KEY).len()["len"].max()
    m_max = decodes.group_by(rw_key).len()["len"].max()
    return (
        prep.select(dec_key)
        .join(kept_rw, on=rw_key, how="left", maintain_order="left")
        .join(kept_dec, on=dec_key, how="left", maintain_order="left")
        .select("_rank_rw", "_rank_dec", _k_max=pl.lit(k_max), _m_max=pl.lit(m_max))
    )


def subgrid_dars(
    obs: ObservationsLike,
    *,
    k: int,
    m: int,
    seed: int = 0,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    cost_bounds: pl.DataFrame | None = None,
    ranks: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Full DARS computed on a seeded k×m sub-grid (:func:`subgrid_observations`).

    Same schema as :func:`full_dars`; cost is normalised on the full frame (or ``cost_bounds``),
    so points of a K×M curve share one cost scale. ``ranks``: :func:`subgrid_ranks` of the
    prepared ``obs`` (:class:`~dars.supervision.core.PreparedObservations`) and ``seed``, to
    share one drawing between several (k, m).
    """
    sub = _subgrid(_prepared(obs, cost_bounds), k=k, m=m, seed=seed, ranks=ranks)
    return _aggregate_prepared(sub, lam=lam, beta=beta, risk="all")
