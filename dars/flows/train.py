"""The train flow: every (dataset, router family, supervision) router from the supervision tables.

``train_flow(config, root, families, supervisions, workers)`` takes parameters only and wires tasks,
so it can run alone after ``dars supervise`` or be triggered by a deployment. It fans out one
task per (dataset, family, supervision) (:func:`dars.tasks.train.train_task`) on a thread pool of
``workers``: each fit runs BLAS/torch on one thread (see ``Router._fit_threads`` and
``dars.routers._torch``), so workers ≈ cores is the right width. Every task runs even if some
fail; the flow then raises listing the failures.
"""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from dars.config import Experiment, resolve_experiment
from dars.flows.artifacts import StageProgress, future_failed
from dars.flows.names import label_run, run_name
from dars.tasks.train import REPORT_SCHEMA, check_training, train_task


@flow(name="train", flow_run_name=run_name("train"))
def train_flow(
    config: str | Experiment,
    root: str | None = None,
    families: list[str] | None = None,
    supervisions: list[str] | None = None,
    workers: int = 2,
    run_label: str | None = None,
) -> pl.DataFrame:
    """Train ``families`` (default: the config's ``families``) × ``supervisions`` (default:
    single_shot, dars and the five ablations) on every benchmark of the experiment. Returns one
    report row per trained (dataset, family, supervision) with columns :data:`REPORT_SCHEMA`.
    ``run_label`` tags the run (:func:`dars.flows.names.label_run`)."""
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    families, supervisions = check_training(exp, families, supervisions)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = [(b.name, f, s) for b in exp.benchmarks for f in families for s in supervisions]
    progress = StageProgress(exp, "train", len(jobs), unit="routers")
    with ThreadPoolTaskRunner(max_workers=workers) as runner:
        futures = [
            runner.submit(
                train_task,
                parameters={"exp": exp, "dataset": d, "family": f, "supervision": s},
            )
            for d, f, s in jobs
        ]
        for fut in as_completed(futures):
            progress.advance(failed=future_failed(fut))
    reports, failures = [], []
    for (d, f, s), fut in zip(jobs, futures, strict=True):
        try:
            reports.append(fut.result())
        except Exception as exc:  # noqa: BLE001 - collected and raised below, after every task
            failures.append(f"{d}/{f}/{s}: {type(exc).__name__}: {exc}")
    get_run_logger().info("trained %d of %d routers", len(reports), len(jobs))
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(jobs)} training tasks failed:\n" + "\n".join(failures)
        )
    return pl.DataFrame(reports, schema=REPORT_SCHEMA)
