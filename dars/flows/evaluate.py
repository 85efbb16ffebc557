"""The evaluate flow: every trained router on the test views → ``results/main.{parquet,json}``.

Parameters only (config path, run root); inputs are read from storage, so a deployment can start
it when training completes.
"""

from __future__ import annotations

import polars as pl
from prefect import flow

from dars.config import load_experiment
from dars.tasks.evaluate import evaluate_main_task


@flow(name="evaluate")
def evaluate_flow(config: str, root: str | None = None) -> pl.DataFrame:
    """Evaluate the experiment in ``config`` under ``root``; returns the ``main`` table."""
    exp = load_experiment(config, root=root)
    return evaluate_main_task(exp, exp.root)
