"""Collection flows: ``rewrite`` → ``decode``, chained by ``collect``.

Flows take parameters only (a config path and a run root) and read everything else from storage,
so a deployment trigger can start any of them. Each flow plans its partitions, skips those that
are complete, and submits one task per remaining shard to the task runner: threads by default,
processes with ``--workers N --processes`` (litellm costs CPU per call, so processes scale the
simulated pool), or any Prefect task runner (e.g. prefect-dask's DaskTaskRunner) for scale-out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from dars.benchmarks.loading import load_splits
from dars.collect import ShardIncomplete, new_run_id, reset_progress
from dars.config import Experiment, load_experiment
from dars.plan import KEY, build_plan, expected_rewrites, status
from dars.storage import read_observations, scan_rewrites
from dars.tasks.collect import decode_shard_task, rewrite_shard_task


def task_runner(workers: int, processes: bool) -> Any:
    """Threads (default) or processes for the shard tasks of one flow run."""
    return (
        ProcessPoolTaskRunner(max_workers=workers) if processes else ThreadPoolTaskRunner(workers)
    )


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


def _experiment(config: str, root: str | None) -> tuple[Experiment, str]:
    exp = load_experiment(config, root=root)
    return exp, exp.root


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
            failures.append(f"{type(exc).__name__}: {exc}")
    keys = ("planned", "already_done", "ok", "failed", "not_run")
    totals = {k: sum(int(r.get(k, 0)) for r in reports) for k in keys}
    totals["cost_usd"] = sum(float(r.get("cost_usd", 0.0)) for r in reports)
    return {"stage": kind, "tasks": len(futures), **totals, "failures": failures}


@flow(name="rewrite")
def rewrite_flow(
    config: str, root: str | None = None, workers: int = 4, processes: bool = False
) -> dict[str, Any]:
    """Ask the rewriter for every missing rewrite; one task per (dataset, split, shard)."""
    exp, root = _experiment(config, root)
    reset_progress(exp.spend_cap_usd)
    plan = expected_rewrites(exp, load_splits(exp))
    have = scan_rewrites(root).select("dataset", "split", "query_id", "rewrite_id").collect()
    done = (
        plan.join(have, on=["dataset", "split", "query_id", "rewrite_id"], how="semi")
        .group_by("dataset", "split", "shard")
        .len("done")
    )
    shards = (
        plan.group_by("dataset", "split", "shard", maintain_order=True)
        .len("expected")
        .join(done, on=["dataset", "split", "shard"], how="left")
        .with_columns(pl.col("done").fill_null(0))
    )
    todo = shards.filter(pl.col("done") < pl.col("expected"))
    run_id = new_run_id()
    with _open_runner(workers, processes) as runner:
        futures = [
            runner.submit(
                rewrite_shard_task,
                parameters={
                    "exp": exp,
                    "root": root,
                    "dataset": d,
                    "split": s,
                    "shard": int(sh),
                    "done_before": int(n),
                    "run_id": run_id,
                },
            )
            for d, s, sh, _, n in todo.iter_rows()
        ]
        summary = _summarise(futures, "rewrite")
    get_run_logger().info(
        "rewrites: %d shards run, %d already complete", len(futures), shards.height - todo.height
    )
    return summary


@flow(name="decode")
def decode_flow(
    config: str, root: str | None = None, workers: int = 4, processes: bool = False
) -> dict[str, Any]:
    """Run every missing observation; one task per (dataset, split, model, shard)."""
    exp, root = _experiment(config, root)
    reset_progress(exp.spend_cap_usd)
    plan = build_plan(exp, load_splits(exp))
    st = status(plan, read_observations(root, [*KEY, "status"])).filter(
        pl.col("dataset").is_not_null()
    )
    todo = st.filter(pl.col("done") < pl.col("expected"))
    run_id = new_run_id()
    with _open_runner(workers, processes) as runner:
        futures = [
            runner.submit(
                decode_shard_task,
                parameters={
                    "exp": exp,
                    "root": root,
                    "dataset": r["dataset"],
                    "split": r["split"],
                    "model": r["model"],
                    "shard": int(r["shard"]),
                    "done_before": int(r["done"]),
                    "run_id": run_id,
                },
            )
            for r in todo.iter_rows(named=True)
        ]
        summary = _summarise(futures, "decode")
    get_run_logger().info(
        "decode: %d partition shards run, %d already complete",
        len(futures),
        st.height - todo.height,
    )
    return summary


@flow(name="collect")
def collect_flow(
    config: str, root: str | None = None, workers: int = 4, processes: bool = False
) -> dict[str, Any]:
    """Rewrite then decode (two subflows, visible as such in the Prefect UI).

    Raises ``RuntimeError`` at the end when some shard is incomplete, after every other shard has
    run, so the flow run is marked failed and ``dars rerun --failed`` knows what to do.
    """
    rw = rewrite_flow(config, root, workers, processes)
    dec = decode_flow(config, root, workers, processes)
    if rw["failures"] or dec["failures"]:
        raise RuntimeError(
            f"collection incomplete: {len(rw['failures'])} rewrite shard(s) and "
            f"{len(dec['failures'])} decode shard(s) failed; first: "
            f"{(rw['failures'] + dec['failures'])[0]}"
        )
    return {"rewrite": rw, "decode": dec}
