"""Test helper: small experiments on the simulated pool and observation stores written for them.

``sim_experiment(...)`` builds an :class:`~dars.config.Experiment` (demo benchmark, the default
``dars-sim`` pool) and can write it as a YAML config; ``write_sim_store(experiment, root)``
simulates the experiment's train grid with :meth:`dars.sim.SimWorld.simulate_frame` (no
litellm) and stores it with :func:`dars.storage.write_observations`, and the simulator's truth,
as the decode stage would.
``observation_rows(frame)`` completes any (key, score, cost) frame into full store rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from dars.config import BenchmarkSpec, Experiment, Pool, Protocol
from dars.storage import WriteCounts, write_observations

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def sim_experiment(
    root: str | Path,
    *,
    benchmark: str = "demo_mc",
    n_train: int = 20,
    n_items: int = 40,
    train_rewrites: int = 5,
    train_decodes: int = 5,
    models: int | None = None,
    draws: int = 100,
    config_path: str | Path | None = None,
) -> Experiment:
    """A small simulated experiment rooted at ``root`` (first ``models`` sim models, default all
    six); with ``config_path`` it is also written there as YAML (what ``load_experiment`` reads)."""
    from dars.sim import default_sim_specs, sim_rewriter_spec

    specs = default_sim_specs()
    exp = Experiment(
        name="test",
        root=str(root),
        benchmarks=[BenchmarkSpec(name=benchmark, n_train=n_train, options={"n_items": n_items})],
        pool=Pool(models=specs[: models or len(specs)]),
        rewriter=sim_rewriter_spec(),
        protocol=Protocol(train_rewrites=train_rewrites, train_decodes=train_decodes),
        single_shot_draws=draws,
    )
    if config_path is not None:
        Path(config_path).write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    return exp


def observation_rows(
    frame: pl.DataFrame, *, split: str = "train", view: str = "train", run_id: str = "test"
) -> pl.DataFrame:
    """Full observation-store rows from a frame with at least ``dataset, query_id, model,
    rewrite_id, decode_id, score, cost_usd`` (and optionally ``status``, token counts).
    Error rows get a null score, zero cost and an error message."""
    status = pl.col("status") if "status" in frame.columns else pl.lit("ok")
    ok = status == "ok"
    tokens = {
        c: (pl.col(c) if c in frame.columns else pl.lit(100)).cast(pl.Int64)
        for c in ("prompt_tokens", "completion_tokens")
    }
    return frame.select(
        pl.col("dataset"),
        pl.lit(split).alias("split"),
        pl.col("query_id"),
        pl.col("model"),
        pl.lit(view).alias("view"),
        pl.col("rewrite_id").cast(pl.Int32),
        pl.col("decode_id").cast(pl.Int32),
        pl.lit("ab" * 32).alias("prompt_sha256"),
        pl.lit("Final Answer: A").alias("response"),
        pl.lit("A").alias("parsed"),
        pl.lit(True).alias("parse_ok"),
        pl.when(ok).then(pl.col("score")).otherwise(None).alias("score"),
        tokens["prompt_tokens"].alias("prompt_tokens"),
        tokens["completion_tokens"].alias("completion_tokens"),
        pl.when(ok).then(pl.col("cost_usd")).otherwise(0.0).fill_null(0.0).alias("cost_usd"),
        pl.lit(0.5).alias("latency_s"),
        status.alias("status"),
        pl.when(ok).then(None).otherwise(pl.lit("SimulatedError: failed")).alias("error"),
        pl.lit(1, pl.Int32).alias("attempts"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(T0).alias("created_at"),
    )


def simulate_train(experiment: Experiment, dataset: str | None = None) -> pl.DataFrame:
    """The experiment's train grid as the simulated pool answers it (one row per observation
    key; ``model`` is the pool name), via a private world so the process world is untouched."""
    from dars.benchmarks.loading import load_splits
    from dars.sim import SimWorld

    dataset = dataset or experiment.benchmarks[0].name
    items = load_splits(experiment)[dataset]["train"]
    world = SimWorld()
    world.register_items(dataset, items)
    p = experiment.protocol
    rewrites = ([-1] if p.train_include_original else []) + list(range(p.train_rewrites))
    specs = experiment.pool.models
    names = {world.model(s.litellm_model).name: s.name for s in specs}
    frame = world.simulate_frame(
        dataset,
        [it.query_id for it in items],
        models=[s.litellm_model for s in specs],
        rewrite_ids=rewrites,
        decode_ids=range(p.train_decodes),
    )
    return frame.with_columns(pl.col("model").replace_strict(names))


def write_sim_store(experiment: Experiment, root: str | Path, **over: Any) -> WriteCounts:
    """Simulate and store every benchmark's train grid under ``root``, and the simulator's truth
    (as the decode flow stores it for a simulated pool); returns the observation counts."""
    from dars.tasks.collect import store_truth

    run = experiment.model_copy(update={"root": str(root)})
    total = WriteCounts()
    for b in experiment.benchmarks:
        total += write_observations(
            root, observation_rows(simulate_train(experiment, b.name)), shard=0
        )
        store_truth(run, b.name)
    return total
