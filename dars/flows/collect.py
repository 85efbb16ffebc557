"""Collection flows: ``rewrite`` → ``decode``, chained by ``collect``.

Flows take parameters only (a config path, or the experiment the pipeline already loaded, and a
run root) and wire tasks: a planning task says which partition shards still have work (it reads
the store; flows never do), then one task per remaining shard goes to the task runner chosen by
``runner`` (:mod:`dars.flows.runners`: ``thread`` by default, ``process``, or ``dask`` — a
LocalCluster, or an existing cluster at ``dask_address`` whose workers may be on other
machines). For a simulated pool the decode flow ends by storing the simulator's ground truth.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import wait

from dars.config import Experiment, resolve_experiment
from dars.flows.names import label_run, run_name
from dars.flows.runners import check_runner, open_runner, shared_dask_cluster
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
    runner: str = "thread",
    dask_address: str | None = None,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Ask the rewriter for every missing rewrite; one task per (dataset, split, shard).
    ``run_id`` (default: a new one) is recorded with every call in the root's ledger; ``only``
    (:func:`dars.plan.key_filter`, e.g. ``{"dataset": ["demo_mc"]}``) narrows the shards by
    dataset and split."""
    check_runner(runner, dask_address)
    exp = resolve_experiment(config, root)
    label_run(exp)
    reset_progress()
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
        summary = _summarise(futures, "rewrite")
    get_run_logger().info("rewrites: %d shards run, %d already complete", len(futures), complete)
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
) -> dict[str, Any]:
    """Run every missing observation; one task per (dataset, split, model, shard). Then, for a
    simulated pool, store its ground truth per dataset (label recovery reads it). ``run_id``
    (default: a new one) is stored with every row and recorded in the root's ledger; ``only``
    (:func:`dars.plan.key_filter`, e.g. ``{"model": ["gpt-4o"]}``) keeps the shards of some
    datasets, models and splits (``dars rerun --failed --model …``)."""
    check_runner(runner, dask_address)
    exp = resolve_experiment(config, root)
    label_run(exp)
    reset_progress()
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
    runner: str = "thread",
    dask_address: str | None = None,
    run_id: str | None = None,
    only: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Rewrite then decode (two subflows, visible as such in the Prefect UI), both under one
    ``run_id`` (default: a new one; returned as ``run_id``), the key of this run's spend in the
    root's ledger. ``only`` narrows both stages (see :func:`decode_flow`). ``workers``,
    ``runner`` (thread | process | dask) and ``dask_address`` say where the shard tasks run
    (:mod:`dars.flows.runners`); ``runner="dask"`` without an address starts one LocalCluster
    of ``workers`` processes for both stages, when the first shard is submitted.

    Raises :class:`~dars.tasks.failures.CollectionIncomplete` (a ``RuntimeError``, one line per
    failed shard in ``failures``) at the end when some shard is incomplete, after every other
    shard has run, so the flow run is marked failed and ``dars rerun --failed`` knows what to
    do. Shards skipped because another live run holds them are not failures (see ``leased``).
    """
    check_runner(runner, dask_address)
    exp = resolve_experiment(config, root)
    label_run(exp)
    run_id = run_id or new_run_id()
    # One Dask LocalCluster (when asked for) for both stages: its workers start once.
    with shared_dask_cluster(runner, workers, dask_address):
        rw = rewrite_flow(exp, None, workers, runner, dask_address, run_id, only)
        dec = decode_flow(exp, None, workers, runner, dask_address, run_id, only)
    if rw["failures"] or dec["failures"]:
        raise CollectionIncomplete(
            f"collection incomplete: {len(rw['failures'])} rewrite shard(s) and "
            f"{len(dec['failures'])} decode shard(s) failed; first: "
            f"{(rw['failures'] + dec['failures'])[0]}",
            rw["failures"] + dec["failures"],
        )
    return {"rewrite": rw, "decode": dec, "run_id": run_id}


__all__ = ["collect_flow", "decode_flow", "rewrite_flow"]
