"""The evaluate stage: one Prefect task run per evaluation experiment.

NO_CACHE: experiments read the store, the trained routes and the supervision and write results,
so a cached result could hide new routers, observations or results. One retry, for transient
filesystem errors only.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.evaluation.suite import check_experiments, run_experiment
from dars.tasks.retry import retry_on_transient_io

__all__ = ["check_experiments", "experiment_task"]


@task(
    name="experiment",
    task_run_name="experiment {name}",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def experiment_task(exp: Experiment, name: str) -> Any:
    """Run evaluation experiment ``name``; returns its result (a table or a dict of tables)."""
    return run_experiment(exp, exp.root, name)
