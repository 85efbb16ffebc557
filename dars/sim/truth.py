"""The simulator's ground truth of an experiment, as the truth store holds it.

For a simulated pool the decode flow stores this table (``dars.tasks.collect.store_truth`` →
:mod:`dars.storage.truth`), so label recovery compares supervision with the truth without ever
importing the simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from dars.benchmarks.loading import load_splits
from dars.sim.provider import sim_world
from dars.sim.world import SimWorld

if TYPE_CHECKING:
    from dars.config import Experiment

#: Paraphrase ids averaged into the simulated truth (see :func:`simulated_truth`).
TRUTH_REWRITES = 64


def simulated_truth(
    exp: Experiment,
    dataset: str,
    *,
    world: SimWorld | None = None,
    truth_rewrites: int = TRUTH_REWRITES,
) -> pl.DataFrame:
    """Ground truth of a simulated pool, one row per (dataset, query_id, model) of the
    dataset's train items × the pool: ``p_true`` and ``expected_cost_usd`` (the columns of
    :mod:`dars.storage.truth`).

    ``p_true`` is the simulator's expected score averaged over ``truth_rewrites`` paraphrase ids
    (0..truth_rewrites-1): the expected quality of a fresh meaning-preserving formulation and
    decode, the quantity both DARS and single-shot estimate. ``expected_cost_usd`` is the
    expected cost of one decode at the pool's prices (the ModelSpec's when set, else the
    simulated model's). Computed on a private copy of ``world`` (default: the process-wide
    world) with the experiment's train items registered, so the shared world is neither
    mutated nor raced.
    """
    base = world if world is not None else sim_world()
    private = SimWorld(models=dict(base.models), profiles=dict(base.profiles), seed=base.seed)
    private.register_items(dataset, load_splits(exp)[dataset]["train"])
    specs = exp.pool.models
    sim_ids = [private.model(s.litellm_model).name for s in specs]
    prices = pl.DataFrame(
        {
            "sim_id": sim_ids,
            "model": [s.name for s in specs],
            "in_price": [
                s.input_price_per_m
                if s.input_price_per_m is not None
                else private.model(i).input_price_per_m
                for s, i in zip(specs, sim_ids, strict=True)
            ],
            "out_price": [
                s.output_price_per_m
                if s.output_price_per_m is not None
                else private.model(i).output_price_per_m
                for s, i in zip(specs, sim_ids, strict=True)
            ],
        }
    )
    frame = private.truth_frame([dataset], sorted(set(sim_ids)), range(truth_rewrites))
    cost = (
        pl.col("expected_prompt_tokens") * pl.col("in_price")
        + pl.col("expected_completion_tokens") * pl.col("out_price")
    ) / 1e6
    return (
        frame.group_by("dataset", "query_id", pl.col("model").alias("sim_id"))
        .agg(
            p_true=pl.col("p_true").mean(),
            expected_prompt_tokens=pl.col("expected_prompt_tokens").first(),
            expected_completion_tokens=pl.col("expected_completion_tokens").first(),
        )
        .join(prices, on="sim_id", how="inner")
        .with_columns(expected_cost_usd=cost)
        .select("dataset", "query_id", "model", "p_true", "expected_cost_usd")
        .sort("dataset", "query_id", "model")
    )
