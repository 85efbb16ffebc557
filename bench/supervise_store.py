"""Synthetic observation stores for bench/bench_supervise.py (numpy, no simulator, no litellm).

``write_store(root, n_rows)`` writes about ``n_rows`` train observations through
:func:`dars.storage.write_observations`: 3 datasets (the demo benchmarks' names) × Q queries ×
6 models × 5 rewrites × 5 decodes, one (dataset, model) partition at a time so memory stays
bounded. Scores are 0/1 draws around a per-(query, model) success rate shifted per rewrite (so
the input- and output-side variances are both non-zero); costs are token counts × a per-model
price with noise; 0.5% of the rows are failed generations (status error), which the stage skips.
``experiment(root)`` is the matching :class:`~dars.config.Experiment` (a non-simulated pool, so
no simulator truth is needed).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

DATASETS = ("demo_mc", "demo_math", "demo_span")
MODELS = ("m0-small", "m1-small", "m2-medium", "m3-medium", "m4-large", "m5-large")
K, M = 5, 5
PRICE = (0.1, 0.15, 0.5, 0.6, 2.0, 3.0)  # USD per million tokens
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def n_queries(n_rows: int) -> int:
    """Queries per dataset so the store holds about ``n_rows`` observations."""
    return max(4, round(n_rows / (len(DATASETS) * len(MODELS) * K * M)))


def _partition(dataset: str, model: int, q: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng([seed, DATASETS.index(dataset), model])
    per_cell = K * M
    n = q * per_cell
    base = rng.beta(2 + model * 0.3, 2, size=q)
    shift = rng.normal(0, 0.15, size=(q, K))
    p = np.clip(base[:, None] + shift, 0.01, 0.99)
    p = np.repeat(p, M, axis=1).ravel()
    score = (rng.random(n) < p).astype(np.float64)
    tokens = rng.integers(50, 400, size=n)
    cost = tokens * PRICE[model] * 1e-6 * rng.lognormal(0, 0.1, size=n)
    failed = rng.random(n) < 0.005
    qid = np.repeat(np.arange(q), per_cell)
    width = len(str(q))
    return pl.DataFrame(
        {
            "dataset": pl.Series([dataset] * n, dtype=pl.String),
            "split": "train",
            "query_id": pl.Series(
                "query_id", np.char.add("q", np.char.zfill(qid.astype(str), width))
            ),
            "model": MODELS[model],
            "view": "train",
            "rewrite_id": np.tile(np.repeat(np.arange(K, dtype=np.int32), M), q),
            "decode_id": np.tile(np.arange(M, dtype=np.int32), q * K),
            "prompt_sha256": "",
            "response": pl.Series(np.where(failed, "", "Final Answer: A")),
            "parsed": pl.Series(np.where(failed, "", "A")),
            "parse_ok": ~failed,
            "score": np.where(failed, np.nan, score),
            "prompt_tokens": np.where(failed, 0, 100),
            "completion_tokens": np.where(failed, 0, tokens),
            "cost_usd": np.where(failed, 0.0, cost),
            "latency_s": 0.5,
            "status": np.where(failed, "error", "ok"),
            "error": pl.Series(np.where(failed, "TimeoutError: simulated", "")),
            "attempts": pl.Series(np.ones(n, dtype=np.int32)),
            "run_id": "bench",
            "created_at": T0,
        }
    ).with_columns(
        pl.col("score").fill_nan(None),
        *(pl.col(c).replace("", None) for c in ("response", "parsed", "error")),
    )


def write_store(root: str | Path, n_rows: int, *, seed: int = 0) -> int:
    """Write the synthetic store under ``root``; returns the number of rows written."""
    from dars.storage import write_observations

    q = n_queries(n_rows)
    total = 0
    for dataset in DATASETS:
        for model in range(len(MODELS)):
            frame = _partition(dataset, model, q, seed)
            total += frame.height
            write_observations(root, frame, shard=0)
            del frame
    return total


def experiment(root: str | Path, *, draws: int = 100):
    """The experiment that supervises the store written by :func:`write_store`."""
    from dars.config import BenchmarkSpec, Experiment, ModelSpec, Pool, Protocol

    return Experiment(
        name="bench-supervise",
        root=str(root),
        benchmarks=[BenchmarkSpec(name=d, n_train=10) for d in DATASETS],
        pool=Pool(models=[ModelSpec(name=m, litellm_model=f"openai/{m}") for m in MODELS]),
        rewriter=ModelSpec(name="rw", litellm_model="openai/rw"),
        protocol=Protocol(train_rewrites=K, train_decodes=M),
        single_shot_draws=draws,
    )
