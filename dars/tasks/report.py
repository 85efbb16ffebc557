"""The report stage: ``report/index.{md,html}`` and the figures from ``results/``."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.tasks.retry import retry_on_transient_io

__all__ = ["report_task"]


@task(
    name="report",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def report_task(exp: Experiment) -> Path:
    """Write the Markdown/HTML report from ``exp.root``'s results; returns ``report/index.md``."""
    from dars.evaluation.report import write_report

    return write_report(exp.root)
