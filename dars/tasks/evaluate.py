"""Prefect task of the evaluate stage (thin: the work is in dars.evaluation.stage).

NO_CACHE: it reads the store and the trained routes and writes results, so a cached result could
hide new routers or observations.
"""

from __future__ import annotations

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.evaluation.stage import evaluate_main


@task(name="evaluate-main", retries=1, retry_delay_seconds=[5], cache_policy=NO_CACHE)
def evaluate_main_task(experiment: Experiment, root: str) -> pl.DataFrame:
    return evaluate_main(experiment, root)
