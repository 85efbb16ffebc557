"""Collection flows: ``rewrite`` → ``decode``, chained by ``collect``.

Flows take parameters only (a config path, or the experiment the pipeline already loaded, and a
run root) and wire tasks: a planning task says which partition shards still have work (it reads
the store; flows never do), then one task per remaining shard goes to the task runner — threads
by default, processes with ``--workers N --processes`` (litellm costs CPU per call, so processes
scale the simulated pool), or any Prefect task runner (e.g. prefect-dask's DaskTaskRunner) for
scale-out. For a simulated pool the decode flow ends by storing the simulator's ground truth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.states import Completed, State
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from dars.config import Experiment, resolve_experiment
from dars.flows.names import label_run, run_name
from dars.procs import exit_with_parent
from dars.tasks.chain import unchanged_message
from dars.tasks.collect import (
    ShardIncomplete,
    decode_shard_task,
    new_run_id,
    plan_decodes_task,
    plan_rewrites_task,
    reset_progress,
    rewrite_shard_task,
    truth_task,
)
from dars.tasks.failures import CollectionIncomplete

#: The name of the final state of a collect run that changed nothing (see :func:`collect_flow`).
UNCHANGED = "Unchanged"


def task_runner(workers: int, processes: bool) -> Any:
    """Threads (default) or processes for the shard tasks of one flow run; a process worker
    exits when the flow's process is gone (killed), instead of living on as an orphan."""
    if processes:
        return ProcessPoolTaskRunner(max_workers=workers, initializer=exit_with_parent)
    return ThreadPoolTaskRunner(workers)


@contextlib.contextmanager
def _open_runner(workers: int, processes: bool) -> Iterator[Any]:
    """The entered task runner of one flow run.

    Process workers are spawned and must report to this process's Prefect API. When that is a
    temporary local server (no ``PREFECT_API_URL``, the offline default), a worker would start a
    temporary server of its own on its first task (tens of seconds each, and its task runs would
    land in a database nobody sees), so the running server's URL is handed down to the workers.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    runner = task_runner(workers, processes)
    if processes and not PREFECT_API_URL.value():
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the process-wide instance the flow run is using
        server.start()  # no-op when it is running
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}), runner:
            yield runner
    else:
        with runner:
            yield runner


def _summarise(futures: list, kind: str) -> dict[str, Any]:
    """Wait for shard futures; count reports and failures (a failed shard does not stop others)."""
    wait(futures)
    reports, failures = [], []
    for fut in futures:
        try:
            reports.append(fut.result())
        except ShardIncomplete as exc:
            reports.append(exc.report.to_dict())
            failures.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides
            failures.append(" ".join(f"{type(exc).__name__}: {exc}".split()))
    keys = ("planned", "already_done", "ok", "failed", "not_run", "leased", "recovered")
    totals = {k: sum(int(r.get(k, 0)) for r in reports) for k in keys}
    totals["cost_usd"] = sum(float(r.get("cost_usd", 0.0)) for r in reports)
    # Shards skipped because another live run on the root holds them: how many, and whose.
    leased = [r for r in reports if r.get("leased")]
    totals["leased_shards"] = len(leased)
    totals["leased_by"] = sorted({str(r["leased_by"]) for r in leased if r.get("leased_by")})
    return {"stage": kind, "tasks": len(futures), **totals, "failures": failures}


@flow(name="rewrite", flow_run_name=run_name("rewrite"))
def rewrite_flow(
    config: str | Experiment,
    root: str | None = None,
    workers: int = 4,
    processes: bool = False,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
    run_label: str | None = None,
) -> dict[str, Any]:
    """Ask the rewriter for every missing rewrite; one task per (dataset, split, shard).
    ``run_id`` (default: a new one) is recorded with every call in the root's ledger; ``only``
    (:func:`dars.plan.key_filter`, e.g. ``{"dataset": ["demo_mc"]}``) narrows the shards by
    dataset and split; ``run_label`` tags the run (:func:`dars.flows.names.label_run`)."""
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    reset_progress()
    todo, complete = plan_rewrites_task(exp, only)
    run_id = run_id or new_run_id()
    with _open_runner(workers, processes) as runner:
        futures = [
            runner.submit(
                rewrite_shard_task,
                parameters={
                    "exp": exp,
                    "dataset": s["dataset"],
                    "split": s["split"],
                    "shard": int(s["shard"]),
                    "done_before": int(s["done"]),
                    "run_id": run_id,
                },
            )
            for s in todo
        ]
        summary = _summarise(futures, "rewrite")
    get_run_logger().info("rewrites: %d shards run, %d already complete", len(futures), complete)
    return summary


@flow(name="decode", flow_run_name=run_name("decode"))
def decode_flow(
    config: str | Experiment,
    root: str | None = None,
    workers: int = 4,
    processes: bool = False,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
    run_label: str | None = None,
) -> dict[str, Any]:
    """Run every missing observation; one task per (dataset, split, model, shard). Then, for a
    simulated pool, store its ground truth per dataset (label recovery reads it). ``run_id``
    (default: a new one) is stored with every row and recorded in the root's ledger; ``only``
    (:func:`dars.plan.key_filter`, e.g. ``{"model": ["gpt-4o"]}``) keeps the shards of some
    datasets, models and splits (``dars rerun --failed --model …``); ``run_label`` tags the run."""
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    reset_progress()
    todo, complete = plan_decodes_task(exp, only)
    run_id = run_id or new_run_id()
    with _open_runner(workers, processes) as runner:
        futures = [
            runner.submit(
                decode_shard_task,
                parameters={
                    "exp": exp,
                    "dataset": s["dataset"],
                    "split": s["split"],
                    "model": s["model"],
                    "shard": int(s["shard"]),
                    "done_before": int(s["done"]),
                    "run_id": run_id,
                },
            )
            for s in todo
        ]
        summary = _summarise(futures, "decode")
    for b in exp.collected:
        truth_task(exp, b.name)
    get_run_logger().info(
        "decode: %d partition shards run, %d already complete", len(futures), complete
    )
    return summary


@flow(name="collect", flow_run_name=run_name("collect"))
def collect_flow(
    config: str | Experiment,
    root: str | None = None,
    workers: int = 4,
    processes: bool = False,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
    run_label: str | None = None,
) -> dict[str, Any] | State:
    """Rewrite then decode (two subflows, visible as such in the Prefect UI), both under one
    ``run_id`` (default: a new one; returned as ``run_id``), the key of this run's spend in the
    root's ledger. ``only`` narrows both stages (see :func:`decode_flow`); ``run_label`` tags
    this run and both subflows.

    Returns ``{"rewrite": summary, "decode": summary, "run_id": …}``. When the collection
    changed nothing (:func:`dars.tasks.chain.unchanged_message`: no new rows, supervision and
    report up to date) the run ends in a Completed-type state named ``Unchanged`` holding the
    same dict: a caller of the flow gets the dict either way, and Prefect emits
    ``prefect.flow-run.Unchanged`` instead of ``prefect.flow-run.Completed``, so the deployment
    triggers of ``deploy/prefect.yaml`` (which expect the latter) start nothing downstream.

    Raises :class:`~dars.tasks.failures.CollectionIncomplete` (a ``RuntimeError``, one line per
    failed shard in ``failures``) at the end when some shard is incomplete, after every other
    shard has run, so the flow run is marked failed and ``dars rerun --failed`` knows what to
    do. Shards skipped because another live run holds them are not failures (see ``leased``).
    """
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    run_id = run_id or new_run_id()
    rw = rewrite_flow(exp, None, workers, processes, run_id, only, run_label=run_label)
    dec = decode_flow(exp, None, workers, processes, run_id, only, run_label=run_label)
    if rw["failures"] or dec["failures"]:
        raise CollectionIncomplete(
            f"collection incomplete: {len(rw['failures'])} rewrite shard(s) and "
            f"{len(dec['failures'])} decode shard(s) failed; first: "
            f"{(rw['failures'] + dec['failures'])[0]}",
            rw["failures"] + dec["failures"],
        )
    result = {"rewrite": rw, "decode": dec, "run_id": run_id}
    unchanged = unchanged_message(exp, rw, dec)
    if unchanged is None:
        return result
    get_run_logger().info(unchanged)
    return Completed(name=UNCHANGED, message=unchanged, data=result)


__all__ = ["UNCHANGED", "collect_flow", "decode_flow", "rewrite_flow", "task_runner"]
