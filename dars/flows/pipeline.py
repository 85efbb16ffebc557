"""The whole DAG as one flow: collect → supervise → train → evaluate → report.

Each stage is a subflow, so the Prefect UI shows the DAG with one node per stage and the shard
tasks under each. The config is read once, here, and the loaded experiment is handed to every
stage; each stage reads its inputs from storage, so any of them can also be rerun alone
(``dars collect``, ``dars supervise``, …) or started by a deployment trigger.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from dars.config import Experiment, resolve_experiment
from dars.flows.collect import collect_flow
from dars.flows.evaluate import evaluate_flow, report_flow
from dars.flows.names import label_run, run_name
from dars.flows.runners import check_runner
from dars.flows.supervise import supervise_flow
from dars.flows.train import train_flow

STAGES: tuple[str, ...] = ("collect", "supervise", "train", "evaluate", "report")


@flow(name="pipeline", flow_run_name=run_name("pipeline"))
def pipeline_flow(
    config: str | Experiment,
    root: str | None = None,
    workers: int = 4,
    runner: str = "thread",
    dask_address: str | None = None,
    stages: list[str] | None = None,
    run_label: str | None = None,
) -> dict[str, Any]:
    """Run ``stages`` (default: all, in DAG order) for the experiment in ``config``; ``workers``,
    ``runner`` and ``dask_address`` choose where the collection's shard tasks run (see
    :func:`~dars.flows.collect.collect_flow`); ``run_label`` tags this run and every stage's
    (:func:`dars.flows.names.label_run`)."""
    wanted = list(stages or STAGES)
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid stages: {', '.join(STAGES)}")
    check_runner(runner, dask_address)
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    out: dict[str, Any] = {}
    if "collect" in wanted:
        out["collect"] = collect_flow(exp, None, workers, runner, dask_address, run_label=run_label)
    if "supervise" in wanted:
        out["supervise"] = supervise_flow(exp, run_label=run_label)
    if "train" in wanted:
        # Each fit already runs on one thread; more than 2 workers oversubscribes 2 cores.
        out["train"] = train_flow(exp, workers=min(workers, 2), run_label=run_label)
    if "evaluate" in wanted:
        out["evaluate"] = evaluate_flow(exp, workers=min(workers, 2), run_label=run_label)
    if "report" in wanted:
        out["report"] = report_flow(exp, run_label=run_label)
    return out
