"""The hand example of the experiment tests (pure and I/O).

Dataset ``demo_mc``, test queries q1, q2, pool models a (costs $0) and b ($10), so c_a = 0,
c_b = 1 and u_b = q_b - 0.05 (λ = 0.05):

test_rewrite (rewrites 0, 1)         test_decode (original, decodes 0, 1)
      a scores  q_a  b scores  q_b         a scores  q_a  b scores  q_b
q1    1, 1      1.0  0, 0      0.0   q1    1, 0      0.5  1, 1      1.0
q2    0, 0      0.0  1, 1      1.0   q2    0, 0      0.0  1, 0      0.5

Routes (q1, q2) → U_rew, U_dec:  (a, b) → 0.975, 0.475;  (a, a) → 0.5, 0.25;
(b, b) → 0.45, 0.7.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dars.config import BenchmarkSpec, Experiment, ModelSpec, Pool
from dars.evaluation.metrics import view_utilities

DS = "demo_mc"
SCORES = {
    "test_rewrite": {
        ("q1", "a"): [1, 1],
        ("q1", "b"): [0, 0],
        ("q2", "a"): [0, 0],
        ("q2", "b"): [1, 1],
    },
    "test_decode": {
        ("q1", "a"): [1, 0],
        ("q1", "b"): [1, 1],
        ("q2", "a"): [0, 0],
        ("q2", "b"): [1, 0],
    },
}
COST = {"a": 0.0, "b": 10.0}
# Route (q1 model, q2 model) → (U_rew, U_dec), from the module docstring.
U = {("a", "b"): (0.975, 0.475), ("a", "a"): (0.5, 0.25), ("b", "b"): (0.45, 0.7)}
# Which routes each trained supervision of family mirt gets in the ablation example.
TRAINED = {
    "single_shot": [("a", "b"), ("a", "a")],
    "dars": [("a", "b")],
    "input_only": [("a", "a")],
    "output_only": [("b", "b")],
    "without_risk": [("a", "a")],
    "rewrite_risk": [("b", "b")],
    "decoding_risk": [("a", "b")],
}


def experiment(root: str | Path = "runs/hand", datasets: tuple[str, ...] = (DS,)) -> Experiment:
    """A two-model simulated experiment on the demo benchmark(s)."""
    return Experiment(
        name="t",
        root=str(root),
        benchmarks=[
            BenchmarkSpec(name=d, n_train=4, n_test=4, options={"n_items": 8}) for d in datasets
        ],
        pool=Pool(
            models=[
                ModelSpec(name="a", litellm_model="dars-sim/cheap-weak"),
                ModelSpec(name="b", litellm_model="dars-sim/strong-cheap"),
            ]
        ),
        rewriter=ModelSpec(name="rw", litellm_model="dars-sim/rewriter"),
    )


def observation_frame(dataset: str = DS) -> pl.DataFrame:
    """One row per test observation of the example: key, view, score, cost_usd."""
    rows = []
    for view, cells in SCORES.items():
        for (qid, model), scores in cells.items():
            for j, s in enumerate(scores):
                rows.append(
                    {
                        "dataset": dataset,
                        "query_id": qid,
                        "model": model,
                        "view": view,
                        "rewrite_id": j if view == "test_rewrite" else -1,
                        "decode_id": 0 if view == "test_rewrite" else j,
                        "score": float(s),
                        "cost_usd": COST[model],
                    }
                )
    return pl.DataFrame(rows)


def view_util(dataset: str = DS) -> pl.DataFrame:
    """The example's view utilities (cost on the scale of its own observations)."""
    return view_utilities(observation_frame(dataset).with_columns(status=pl.lit("ok")))


def routes(draws: list[tuple[str, str]]) -> pl.DataFrame:
    """routes.parquet rows: draw s routes (q1, q2) to ``draws[s]``."""
    rows = [
        {"draw": s, "query_id": q, "model": m, "model_index": "ab".index(m)}
        for s, picks in enumerate(draws)
        for q, m in zip(("q1", "q2"), picks, strict=True)
    ]
    return pl.DataFrame(rows, schema_overrides={"draw": pl.Int32, "model_index": pl.Int32})


def diagnostics_rows(dataset: str, value: float) -> pl.DataFrame:
    """A ``diagnostics`` supervision table: outcome instability ``value`` and the winner flip
    under the paper's definition (``value / 2``, the default) and the draws one (+ 0.1)."""
    return pl.DataFrame(
        {
            "dataset": [dataset] * 3,
            "metric": ["outcome_instability", "winner_flip_rate", "winner_flip_rate"],
            "definition": [None, "paper", "draws"],
            "is_default": [True, True, False],
            "value": [value, value / 2, value / 2 + 0.1],
            "ci_low": [value - 0.1, 0.0, 0.0],
            "ci_high": [value + 0.1, 1.0, 1.0],
            "n_queries": [2, 2, 2],
            "n_units": [4, 2, 2],
        },
        schema_overrides={"definition": pl.String},
    )


def recovery_rows(dataset: str) -> pl.DataFrame:
    """A ``recovery`` supervision table of one row (single-shot labels, full protocol)."""
    return pl.DataFrame(
        {
            "dataset": [dataset],
            "supervision": ["single_shot"],
            "k": pl.Series([None], dtype=pl.Int32),
            "m": pl.Series([None], dtype=pl.Int32),
            "recovery": [0.5],
            "ci_low": [0.25],
            "ci_high": [0.75],
            "regret": [0.1],
            "n_queries": [2],
            "n_labels": [200],
        }
    )
