"""Seeded synthetic observation frames with a known ground truth (for tests, demos and benches).

Generative model, per dataset (all draws from one ``numpy`` generator seeded by ``seed``):

* model ability ``a_m ~ N(0, 1)``, query difficulty ``d_q ~ N(0, 1)``, cell interaction
  ``e_qm ~ N(0, 0.7)``: base logit ``z_qm = a_m - d_q + e_qm``;
* each formulation r (rewrites 0..K-1, plus the original -1 when ``include_original``) shifts
  the logit by ``δ_qmr ~ N(0, input_noise)`` (input-side variance), giving
  ``p_qmr = sigmoid(z_qm + δ_qmr)``;
* each decode is ``score ~ Bernoulli(p_qmr)`` (output-side variance);
* ``cost_usd = price_m * length_q * exp(N(0, cost_noise))`` with ``price_m = exp(N(-8, 1))``
  and ``length_q = exp(N(0, 0.3))``.

Ground truth per (dataset, query_id, model): ``p_true = E_δ[sigmoid(z_qm + δ)]`` (Gauss–Hermite
quadrature), ``sigma_true = sqrt(p_true (1 - p_true))`` (a single score is Bernoulli(p_true)
marginally) and ``c_true`` = the expected cost ``price_m * length_q * exp(cost_noise² / 2)``
min-max normalised with the dataset's observed cost range (the same scale as ``c_norm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from dars.supervision.core import CELL_KEY, OBS_KEY, check_models


class SyntheticData(NamedTuple):
    """``observations``: one row per generation, observation-store columns ``dataset, split,
    query_id, model, view, rewrite_id, decode_id`` (int32), ``score`` (float64, null on error
    rows), ``cost_usd`` (float64, null on error rows), ``status`` ("ok" | "error").
    ``truth``: one row per (dataset, query_id, model) with ``p_true, c_true, sigma_true``."""

    observations: pl.DataFrame
    truth: pl.DataFrame


def _expected_sigmoid(z: np.ndarray, scale: float, nodes: int = 40) -> np.ndarray:
    if scale == 0:
        return 1 / (1 + np.exp(-z))
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    return (w / (1 + np.exp(-(z[..., None] + scale * x)))).sum(axis=-1)


def synthetic_observations(
    *,
    n_queries: int = 20,
    models: Sequence[str] = ("small", "medium", "large"),
    n_rewrites: int = 5,
    n_decodes: int = 5,
    datasets: Sequence[str] = ("synthetic",),
    include_original: bool = False,
    input_noise: float = 0.8,
    cost_noise: float = 0.2,
    error_rate: float = 0.0,
    seed: int = 0,
) -> SyntheticData:
    """A complete train-view observation grid and its ground truth (see the module docstring).

    ``error_rate`` turns that share of rows into failed generations (``status="error"``, null
    score and cost) so callers exercise the ok-only rule. Query ids are ``q0000``, ``q0001``, ….
    """
    names = check_models(models)
    if n_queries < 1 or n_rewrites < 1 or n_decodes < 1:
        raise ValueError("n_queries, n_rewrites and n_decodes must be >= 1")
    if not 0 <= error_rate < 1:
        raise ValueError(f"error_rate must be in [0, 1), got {error_rate!r}")
    rng = np.random.default_rng(seed)
    rewrite_ids = np.arange(-1 if include_original else 0, n_rewrites, dtype=np.int32)
    n_q, n_m, n_r, n_d = n_queries, len(names), rewrite_ids.size, n_decodes
    obs_parts, truth_parts = [], []
    for dataset in datasets:
        z = (
            rng.normal(size=n_m)[None, :]
            - rng.normal(size=n_q)[:, None]
            + rng.normal(scale=0.7, size=(n_q, n_m))
        )
        p = 1 / (1 + np.exp(-(z[..., None] + rng.normal(scale=input_noise, size=(n_q, n_m, n_r)))))
        score = (rng.random((n_q, n_m, n_r, n_d)) < p[..., None]).astype(np.float64)
        price = np.exp(rng.normal(-8.0, 1.0, size=n_m))
        length = np.exp(rng.normal(0.0, 0.3, size=n_q))
        base = length[:, None] * price[None, :]
        cost = base[..., None, None] * np.exp(rng.normal(0.0, cost_noise, size=score.shape))
        failed = rng.random(score.shape) < error_rate

        q_i, m_i, r_i, d_i = (a.ravel() for a in np.indices(score.shape))
        ok = ~failed.ravel()
        obs_parts.append(
            pl.DataFrame(
                {
                    "dataset": dataset,
                    "split": "train",
                    "query_id": np.char.mod("q%04d", q_i).tolist(),
                    "model": np.asarray(names, dtype=object)[m_i].tolist(),
                    "view": "train",
                    "rewrite_id": rewrite_ids[r_i],
                    "decode_id": d_i.astype(np.int32),
                    "score": np.where(ok, score.ravel(), np.nan),
                    "cost_usd": np.where(ok, cost.ravel(), np.nan),
                    "status": np.where(ok, "ok", "error").tolist(),
                }
            ).with_columns(pl.col("score", "cost_usd").fill_nan(None))
        )
        ok_cost = cost.ravel()[ok]
        lo, hi = (ok_cost.min(), ok_cost.max()) if ok_cost.size else (0.0, 0.0)
        expected_cost = base * np.exp(cost_noise**2 / 2)
        p_true = _expected_sigmoid(z, input_noise)
        tq, tm = (a.ravel() for a in np.indices((n_q, n_m)))
        truth_parts.append(
            pl.DataFrame(
                {
                    "dataset": dataset,
                    "query_id": np.char.mod("q%04d", tq).tolist(),
                    "model": np.asarray(names, dtype=object)[tm].tolist(),
                    "p_true": p_true.ravel(),
                    "c_true": ((expected_cost - lo) / (hi - lo) if hi > lo else 0 * base).ravel(),
                    "sigma_true": np.sqrt(p_true * (1 - p_true)).ravel(),
                }
            )
        )
    return SyntheticData(
        observations=pl.concat(obs_parts).sort(OBS_KEY),
        truth=pl.concat(truth_parts).sort(CELL_KEY),
    )
