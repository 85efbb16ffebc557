"""Collection flows: ``rewrite`` → ``decode``, chained by ``collect``.

Flows take parameters only (a config path, or the experiment the pipeline already loaded, and a
run root) and wire tasks: a planning task says which partition shards still have work (it reads
the store; flows never do), then one task per remaining shard goes to the task runner chosen by
``runner`` (:mod:`dars.flows.runners`: ``thread`` by default, ``process``, or ``dask`` — a
LocalCluster, or an existing cluster at ``dask_address`` whose workers may be on other
machines). For a simulated pool the decode flow ends by storing the simulator's ground truth.

A stage whose shards failed ends its subflow run Failed (:class:`StageIncomplete`), its state
message naming each failed partition's model, dataset, split and cause (HTTP status and
exception class, keys scrubbed); ``collect`` goes on to the next stage all the same and fails at
the end. The Prefect UI also gets artifacts (:mod:`dars.flows.artifacts`): a progress bar per
stage run and the store's table of partitions per collect run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.states import Completed, State

from dars.config import Experiment, resolve_experiment
from dars.flows.artifacts import (
    StageProgress,
    future_failed,
    publish_collect,
    redact,
    stage_message,
)
from dars.flows.names import label_run, run_name
from dars.flows.runners import check_runner, open_runner, shared_dask_cluster
from dars.tasks.chain import unchanged_task
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
from dars.tasks.failures import CollectionIncomplete, StageIncomplete

#: The name of the final state of a collect run that changed nothing (see :func:`collect_flow`).
UNCHANGED = "Unchanged"


def _summarise(
    futures: list, kind: str, exp: Experiment, shards: list[dict[str, Any]]
) -> dict[str, Any]:
    """Wait for shard futures (``shards``: their parameters, in the same order), advancing the
    stage's progress artifact as they finish; count reports and failures (a failed shard does
    not stop others). ``failed_shards`` has one dict per failed shard: its report, or where it
    is and the exception it raised."""
    progress = StageProgress(exp, kind, len(futures))
    for fut in as_completed(futures):
        progress.advance(failed=future_failed(fut))
    reports, failures, failed = [], [], []
    for fut, shard in zip(futures, shards, strict=True):
        try:
            reports.append(fut.result())
        except ShardIncomplete as exc:
            reports.append(exc.report.to_dict())
            failures.append(str(exc))
            failed.append(exc.report.to_dict())
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides
            line = " ".join(f"{type(exc).__name__}: {exc}".split())
            failures.append(line)
            where = {k: shard.get(k) for k in ("dataset", "split", "model", "shard")}
            failed.append({**where, "exception": line[:120]})
    keys = ("planned", "already_done", "ok", "failed", "not_run", "leased", "recovered")
    totals = {k: sum(int(r.get(k, 0)) for r in reports) for k in keys}
    totals["cost_usd"] = sum(float(r.get("cost_usd", 0.0)) for r in reports)
    # Shards skipped because another live run on the root holds them: how many, and whose.
    leased = [r for r in reports if r.get("leased")]
    totals["leased_shards"] = len(leased)
    totals["leased_by"] = sorted({str(r["leased_by"]) for r in leased if r.get("leased_by")})
    return {
        "stage": kind,
        "tasks": len(futures),
        **totals,
        "failures": failures,
        "failed_shards": failed,
    }


def _fail_if_incomplete(exp: Experiment, summary: dict[str, Any], model: str | None = None) -> None:
    """End a stage's subflow Failed when some shard failed: raise :class:`StageIncomplete`
    with the message naming each failed partition's cause (keys scrubbed) and the summary."""
    if summary["failed_shards"]:
        message = stage_message(
            summary["stage"], summary["tasks"], summary["failed_shards"], model=model
        )
        raise StageIncomplete(redact(exp, message), summary)


@flow(name="rewrite", flow_run_name=run_name("rewrite"))
def rewrite_flow(
    config: str | Experiment,
    root: str | None = None,
    workers: int = 4,
    runner: str = "thread",
    dask_address: str | None = None,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
    run_label: str | None = None,
) -> dict[str, Any]:
    """Ask the rewriter for every missing rewrite; one task per (dataset, split, shard).
    ``run_id`` (default: a new one) is recorded with every call in the root's ledger; ``only``
    (:func:`dars.plan.key_filter`, e.g. ``{"dataset": ["demo_mc"]}``) narrows the shards by
    dataset and split; ``run_label`` tags the run (:func:`dars.flows.names.label_run`). Returns
    the stage's summary; when some shard failed, raises :class:`StageIncomplete` (the summary in
    ``summary``) after every shard ran."""
    check_runner(runner, dask_address)
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    reset_progress("rewrite")
    todo, complete = plan_rewrites_task(exp, only)
    run_id = run_id or new_run_id()
    with open_runner(runner, workers, dask_address) as shards:
        futures = [
            shards.submit(
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
        summary = _summarise(futures, "rewrite", exp, todo)
    get_run_logger().info("rewrites: %d shards run, %d already complete", len(futures), complete)
    _fail_if_incomplete(exp, summary, exp.rewriter.name if exp.rewriter else None)
    return summary


@flow(name="decode", flow_run_name=run_name("decode"))
def decode_flow(
    config: str | Experiment,
    root: str | None = None,
    workers: int = 4,
    runner: str = "thread",
    dask_address: str | None = None,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
    run_label: str | None = None,
) -> dict[str, Any]:
    """Run every missing observation; one task per (dataset, split, model, shard). Then, for a
    simulated pool, store its ground truth per dataset (label recovery reads it). ``run_id``
    (default: a new one) is stored with every row and recorded in the root's ledger; ``only``
    (:func:`dars.plan.key_filter`, e.g. ``{"model": ["gpt-4o"]}``) keeps the shards of some
    datasets, models and splits (``dars rerun --failed --model …``); ``run_label`` tags the run.
    Returns the stage's summary; when some shard failed, raises :class:`StageIncomplete` (the
    summary in ``summary``) after every shard ran and the truth is stored."""
    check_runner(runner, dask_address)
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    reset_progress("decode")
    todo, complete = plan_decodes_task(exp, only)
    run_id = run_id or new_run_id()
    with open_runner(runner, workers, dask_address) as shards:
        futures = [
            shards.submit(
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
        summary = _summarise(futures, "decode", exp, todo)
    for b in exp.collected:
        truth_task(exp, b.name)
    get_run_logger().info(
        "decode: %d partition shards run, %d already complete", len(futures), complete
    )
    _fail_if_incomplete(exp, summary)
    return summary


@flow(name="collect", flow_run_name=run_name("collect"))
def collect_flow(
    config: str | Experiment,
    root: str | None = None,
    workers: int = 4,
    runner: str = "thread",
    dask_address: str | None = None,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
    run_label: str | None = None,
) -> dict[str, Any] | State:
    """Rewrite then decode (two subflows, visible as such in the Prefect UI), both under one
    ``run_id`` (default: a new one; returned as ``run_id``), the key of this run's spend in the
    root's ledger. ``only`` narrows both stages (see :func:`decode_flow`). ``workers``,
    ``runner`` (thread | process | dask) and ``dask_address`` say where the shard tasks run
    (:mod:`dars.flows.runners`); ``runner="dask"`` without an address starts one LocalCluster
    of ``workers`` processes for both stages, when the first shard is submitted. ``run_label``
    tags this run and both subflows.

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
    Before that, the run's partition table artifact is made from the store.
    """
    check_runner(runner, dask_address)
    exp = resolve_experiment(config, root)
    label_run(exp, run_label)
    run_id = run_id or new_run_id()
    # A failed stage's subflow run is Failed with its cause; decode still runs after a failed
    # rewrite stage (it runs every key whose rewrite is stored).
    # One Dask LocalCluster (when asked for) for both stages: its workers start once.
    with shared_dask_cluster(runner, workers, dask_address):
        try:
            rw = rewrite_flow(
                exp, None, workers, runner, dask_address, run_id, only, run_label=run_label
            )
        except StageIncomplete as exc:
            rw = exc.summary
        try:
            dec = decode_flow(
                exp, None, workers, runner, dask_address, run_id, only, run_label=run_label
            )
        except StageIncomplete as exc:
            dec = exc.summary
    publish_collect(exp, only)
    if rw["failures"] or dec["failures"]:
        raise CollectionIncomplete(
            f"collection incomplete: {len(rw['failures'])} rewrite shard(s) and "
            f"{len(dec['failures'])} decode shard(s) failed; first: "
            f"{(rw['failures'] + dec['failures'])[0]}",
            rw["failures"] + dec["failures"],
        )
    result = {"rewrite": rw, "decode": dec, "run_id": run_id}
    unchanged = unchanged_task(exp, rw, dec)
    if unchanged is None:
        return result
    get_run_logger().info(unchanged)
    return Completed(name=UNCHANGED, message=unchanged, data=result)


__all__ = ["UNCHANGED", "collect_flow", "decode_flow", "rewrite_flow"]
