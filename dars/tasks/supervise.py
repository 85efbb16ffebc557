"""Prefect task of the supervise stage: one task run per dataset (no maths here).

The body is :func:`dars.supervision.stage.supervise_dataset`. The task reads the observation
store and writes supervision files, so it is not cached (``NO_CACHE``): a cache hit keyed on its
inputs would skip rewriting files that were deleted or made stale by new observations, and a
rerun costs seconds of polars. Retries cover transient filesystem errors only; a missing store,
a bad config or inconsistent data fail at once, since retrying cannot fix them.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.supervision.stage import DatasetSupervision, supervise_dataset


def retry_on_transient_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only on OS-level I/O errors (e.g. a network filesystem hiccup), never on a missing
    input (``FileNotFoundError``), a permission problem or a data/config error."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError) and not isinstance(
        exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError
    )


@task(
    name="supervise-dataset",
    task_run_name="supervise-{dataset}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def supervise_dataset_task(
    experiment: Experiment, root: str, dataset: str, n_boot: int = 1000
) -> DatasetSupervision:
    """Compute and write every supervision table of ``dataset`` under ``root``."""
    return supervise_dataset(experiment, root, dataset, n_boot=n_boot)
