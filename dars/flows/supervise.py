"""The supervise flow: every dataset's supervision tables from the observation store.

``supervise_flow(config, root)`` takes parameters only (a config path, or the experiment the
pipeline already loaded, and an optional run root), so a deployment can start it when the decode
flow completes. It runs one task per dataset (:func:`dars.tasks.supervise.supervise_dataset_task`),
one dataset after the other, and returns the concatenated summaries (one row per (dataset,
metric), columns :data:`dars.supervision.tables.SUMMARY_COLUMNS`).
"""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from dars.config import Experiment, resolve_experiment
from dars.flows.artifacts import StageProgress
from dars.flows.names import label_run, run_name
from dars.tasks.supervise import supervise_dataset_task


@flow(name="supervise", flow_run_name=run_name("supervise"))
def supervise_flow(
    config: str | Experiment, root: str | None = None, run_label: str | None = None
) -> pl.DataFrame:
    """Supervise every benchmark of the experiment (run directory ``root``, default: the
    config's ``root``); returns one summary row per (dataset, metric). ``run_label`` tags the
    run (:func:`dars.flows.names.label_run`)."""
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    # One dataset at a time (read, supervise, write, free): the peak memory is one dataset's,
    # and polars already spreads each dataset's work over every core.
    progress = StageProgress(exp, "supervise", len(exp.benchmarks), unit="datasets")
    results = []
    for b in exp.benchmarks:
        results.append(supervise_dataset_task.submit(exp, b.name).result())
        progress.advance()
    logger = get_run_logger()
    for r in results:
        logger.info("supervision of %s: %d tables written", r.dataset, len(r.files))
        for warning in r.warnings:
            logger.warning(warning)
    return pl.concat([r.summary for r in results])
