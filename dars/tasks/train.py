"""Prefect task of the train stage: one task run per (dataset, router family, mode).

The body is :func:`dars.training.train_router`. The task reads supervision and embeddings from
the store and writes the fitted router and its routes, so it is not cached (``NO_CACHE``): a
cache hit keyed on its parameters would skip rewriting model files that were deleted or made
stale by new supervision. One retry, for transient filesystem errors only (the same condition as
the supervise task); a missing table, bad config or failed fit fail at once.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.tasks.supervise import retry_on_transient_io
from dars.training import train_router


@task(
    name="train-router",
    task_run_name="train {dataset}/{family}/{mode}",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def train_task(
    experiment: Experiment, root: str, dataset: str, family: str, mode: str
) -> dict[str, Any]:
    """Train ``family`` on ``dataset``'s ``mode`` supervision; returns the training report."""
    return train_router(experiment, root, dataset, family, mode)
