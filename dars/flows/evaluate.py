"""The evaluate and report flows: trained routers and supervision → ``results/`` → ``report/``.

Both take parameters only (config path or loaded experiment, run root, names), so a deployment
can start ``evaluate`` when training completes and ``report`` when evaluation completes.
``evaluate_flow`` fans out one task per experiment (they are independent) on a thread pool;
every task runs even if some fail, then the flow raises listing the failures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from dars.config import Experiment, resolve_experiment
from dars.flows.artifacts import StageProgress, future_failed, publish_evaluate, publish_report
from dars.flows.names import label_run, run_name
from dars.tasks.evaluate import check_experiments, experiment_task
from dars.tasks.report import report_files, report_task


@flow(name="evaluate", flow_run_name=run_name("evaluate"))
def evaluate_flow(
    config: str | Experiment,
    root: str | None = None,
    experiments: list[str] | None = None,
    workers: int = 2,
    run_label: str | None = None,
) -> dict[str, Any]:
    """Run ``experiments`` (default: all, in report order) for the experiment; returns
    experiment name → its tables (table name → frame). ``run_label`` tags the run."""
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    names = check_experiments(experiments)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    progress = StageProgress(exp, "evaluate", len(names), unit="experiments")
    with ThreadPoolTaskRunner(max_workers=workers) as runner:
        futures = {
            name: runner.submit(experiment_task, parameters={"exp": exp, "name": name})
            for name in names
        }
        for fut in as_completed(list(futures.values())):
            progress.advance(failed=future_failed(fut))
    out: dict[str, Any] = {}
    failures = []
    for name, fut in futures.items():
        try:
            out[name] = fut.result()
        except Exception as exc:  # noqa: BLE001 - collected and raised below, after every task
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    get_run_logger().info("ran %d of %d experiments", len(out), len(names))
    publish_evaluate(exp, out)
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(names)} experiments failed:\n" + "\n".join(failures)
        )
    return out


@flow(name="report", flow_run_name=run_name("report"))
def report_flow(
    config: str | Experiment, root: str | None = None, run_label: str | None = None
) -> Path:
    """Write ``report/index.{md,html}`` and the figures from the results of the run;
    ``run_label`` tags the run."""
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    progress = StageProgress(exp, "report", 1, unit="report")
    md = report_task(exp)
    progress.advance()
    publish_report(exp, *report_files(exp))
    return md
