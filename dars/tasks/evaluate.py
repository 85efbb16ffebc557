"""Prefect tasks of the evaluate and report stages (thin: the work is in dars.evaluation).

One task run per experiment (:mod:`dars.evaluation.suite`) and one for the report. NO_CACHE: they
read the store, the trained routes and the results and write results, so a cached result could
hide new routers, observations or results. One retry, for transient filesystem errors only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.evaluation.suite import run_experiment
from dars.tasks.supervise import retry_on_transient_io


@task(
    name="experiment",
    task_run_name="experiment {name}",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def experiment_task(experiment: Experiment, root: str, name: str) -> Any:
    """Run evaluation experiment ``name``; returns its result (a table or a dict of tables)."""
    return run_experiment(experiment, root, name)


@task(
    name="report",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def report_task(root: str) -> Path:
    """Write the Markdown/HTML report from ``root``'s results; returns ``report/index.md``."""
    from dars.evaluation.report import write_report

    return write_report(root)
