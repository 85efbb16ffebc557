"""The supervise flow: every dataset's supervision tables from the observation store.

``supervise_flow(config, root)`` takes parameters only (a config path and an optional run root)
and reads its inputs from storage, so a deployment can start it when the decode flow completes.
It fans out one task per dataset (:func:`dars.tasks.supervise.supervise_dataset_task`) and
returns the concatenated summaries (:func:`dars.supervision.stage.summarise`); print them with
:func:`dars.supervision.stage.diagnostics_table`.
"""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from dars.config import load_experiment
from dars.tasks.supervise import supervise_dataset_task


@flow(name="supervise")
def supervise_flow(config: str, root: str | None = None) -> pl.DataFrame:
    """Supervise every benchmark of the experiment in ``config`` under ``root`` (default: the
    config's ``root``); returns one summary row per (dataset, metric)."""
    experiment = load_experiment(config, root=root)
    futures = [
        supervise_dataset_task.submit(experiment, experiment.root, b.name)
        for b in experiment.benchmarks
    ]
    results = [f.result() for f in futures]
    logger = get_run_logger()
    for r in results:
        logger.info("supervision of %s: %d tables written", r.dataset, len(r.files))
    return pl.concat([r.summary for r in results])
