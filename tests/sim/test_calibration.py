"""Calibration of the default simulated pool against the paper's diagnostics (seed_figures.yaml).

On the demo benchmarks with the 5 × 5 train protocol (200 training queries each), the paper's
diagnostics land in these ranges with world seed 0 (measured values in the comments; seeds 1-3
vary by about ±0.05):

    demo_mc   (GPQA-like)  outcome instability 0.72 (paper 0.715), winner flip 0.95 (0.970)
    demo_math (MATH-like)  winner flip 0.65 (paper 0.645), output-side variance dominates
    demo_span (DROP-like)  winner flip 0.60 (paper 0.665), input-side ≈ output-side variance

Run this file as a script to print the numbers: ``python tests/sim/test_calibration.py``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import dars.benchmarks as B
from dars.sim import SimWorld

LAM, BETA = 0.05, 0.2


def diagnostics(obs: pl.DataFrame, *, n_draws: int = 100, seed: int = 0) -> dict[str, float]:
    """Routing diagnostics of one dataset's observations.

    ``obs`` has one row per (query_id, model, rewrite_id, decode_id) with ``score`` and
    ``cost_usd``, every (query, model) having the same K × M observations. Cost is min-max
    normalised over the dataset. Returns:

    - ``instability``: share of (query, model) pairs whose K·M scores are not all equal;
    - ``flip_aligned``: share of queries whose single-shot winner (argmax over models of
      score − λ·cost at observation index j) is not the same for every j;
    - ``flip_draws``: the same over ``n_draws`` draws of one random observation per pair;
    - ``single_vs_da``: share of (draw, query) whose single-shot winner differs from the
      distribution-aware winner argmax(μ − λ·c̄ − β·σ);
    - ``var_in`` / ``var_out``: mean over pairs of the variance of the per-rewrite mean score
      (input side) and of the mean within-rewrite variance (output side).
    """
    lo, hi = obs["cost_usd"].min(), obs["cost_usd"].max()
    df = obs.with_columns(c=(pl.col("cost_usd") - lo) / (hi - lo)).sort(
        "query_id", "model", "rewrite_id", "decode_id"
    )
    q, m = df["query_id"].n_unique(), df["model"].n_unique()
    k, d = df["rewrite_id"].n_unique(), df["decode_id"].n_unique()
    s = df["score"].to_numpy().reshape(q, m, k, d)
    flat_s = s.reshape(q, m, k * d)
    flat_c = df["c"].to_numpy().reshape(q, m, k * d)
    util = flat_s - LAM * flat_c
    winners = util.argmax(1)  # (query, observation index)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, k * d, size=(n_draws, q, m))
    drawn = np.take_along_axis(np.broadcast_to(util, (n_draws, q, m, k * d)), pick[..., None], -1)
    single = drawn[..., 0].argmax(2)  # (draw, query)
    mu, cbar, sd = flat_s.mean(-1), flat_c.mean(-1), flat_s.std(-1, ddof=1)
    da = (mu - LAM * cbar - BETA * sd).argmax(1)
    return {
        "instability": float(np.mean(flat_s.max(-1) != flat_s.min(-1))),
        "flip_aligned": float(np.mean((winners != winners[:, :1]).any(1))),
        "flip_draws": float(np.mean((single != single[:1]).any(0))),
        "single_vs_da": float(np.mean(single != da[None])),
        "var_in": float(s.mean(-1).var(-1).mean()),
        "var_out": float(s.var(-1).mean()),
    }


def demo_diagnostics(seed: int = 0) -> dict[str, dict[str, float]]:
    world = SimWorld(seed=seed)
    out = {}
    for name in ("demo_mc", "demo_math", "demo_span"):
        bench = B.get(name, n_items=400)
        items = bench.load()
        train = bench.split(items, n_train=200, seed=0)["train"]
        world.register_items(name, items)
        out[name] = diagnostics(world.simulate_frame(name, [it.query_id for it in train]))
    return out


def test_diagnostics_on_a_hand_made_frame() -> None:
    # Two queries, two models, 1 rewrite × 2 decodes. q1: model a always right and cheaper →
    # stable winner a. q2: a right then wrong, b always right → winner flips (a, then b).
    rows = [
        ("q1", "a", 0, 0, 1.0, 1.0),
        ("q1", "a", 0, 1, 1.0, 1.0),
        ("q1", "b", 0, 0, 0.0, 3.0),
        ("q1", "b", 0, 1, 1.0, 3.0),
        ("q2", "a", 0, 0, 1.0, 1.0),
        ("q2", "a", 0, 1, 0.0, 1.0),
        ("q2", "b", 0, 0, 1.0, 3.0),
        ("q2", "b", 0, 1, 1.0, 3.0),
    ]
    obs = pl.DataFrame(
        rows,
        schema=["query_id", "model", "rewrite_id", "decode_id", "score", "cost_usd"],
        orient="row",
    )
    d = diagnostics(obs, n_draws=200)
    assert d["instability"] == 0.5  # (q1, b) and (q2, a) vary
    assert d["flip_aligned"] == 0.5
    assert d["flip_draws"] == 0.5
    assert d["var_in"] == 0.0 and d["var_out"] == pytest.approx(0.125)


def test_default_pool_lands_in_the_papers_range() -> None:
    diag = demo_diagnostics()
    mc, math, span = diag["demo_mc"], diag["demo_math"], diag["demo_span"]
    assert 0.62 <= mc["instability"] <= 0.82
    assert mc["flip_aligned"] >= 0.88 and mc["flip_draws"] >= 0.88
    assert 0.5 <= math["flip_aligned"] <= 0.8
    assert 0.5 <= span["flip_aligned"] <= 0.8
    assert mc["flip_aligned"] > max(math["flip_aligned"], span["flip_aligned"])
    # Output-side variance dominates GPQA and MATH; DROP's input side is about as large.
    assert mc["var_in"] < 0.5 * mc["var_out"] and math["var_in"] < 0.5 * math["var_out"]
    assert 0.7 <= span["var_in"] / span["var_out"] <= 1.6


if __name__ == "__main__":
    for seed in (0, 1, 2):
        for name, d in demo_diagnostics(seed).items():
            print(seed, name, {k: round(v, 3) for k, v in d.items()})
