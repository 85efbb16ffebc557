"""The collect deployment with ``runner=dask`` on an existing Dask cluster, started as
deploy/README.md (step 9) starts one, through the real server, worker and trigger chain.

Seen while writing that README: with file-path entrypoints (``dars/flows/collect.py:…``) every
shard failed on the cluster with "Error during deserialization of the task graph" — the flow
module loaded from a file exists only in the flow-run process, and Prefect ships the run's
context (the flow included) with each task. The deployments now name modules
(``dars.flows.collect.collect_flow``). Runs after test_chain.py (file order): its chain starts
runs of its own on the shared stack."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from dars.storage.layout import RunLayout

pytestmark = pytest.mark.deploy

STAGES = ("collect", "supervise", "train", "evaluate", "report")


def test_the_collect_deployment_runs_its_shards_on_an_existing_dask_cluster(
    sqlite_stack, dask_cluster, prefect_stack_module
):
    """``dask_cluster`` (tests/flows/test_runners.py, via conftest): the cluster as
    deploy/README.md starts one, on loopback, stopped after the test."""
    address, worker_pids = dask_cluster
    work = sqlite_stack.workdir
    root = work / "runs" / "dask"
    config = prefect_stack_module.tiny_config(work / "tiny-dask.yaml", work / "config-root")
    since = datetime.now(UTC) - timedelta(seconds=5)
    sqlite_stack.run_deployment(
        "collect/dars-collect",
        config=str(config),
        root=str(root),
        runner="dask",
        dask_address=address,
        run_label="dask",
    )
    # Wait for the whole chain: no run may outlive the test on the shared stack.
    runs = sqlite_stack.wait_chain(str(root), since)
    states = {s: (r.state_name, r.state.message) for s, r in runs.items()}
    assert set(runs) == set(STAGES), states
    assert all(name == "Completed" for name, _ in states.values()), states
    assert runs["collect"].parameters["runner"] == "dask"
    assert runs["collect"].parameters["dask_address"] == address

    # Every call was made in a process of the cluster.
    with sqlite3.connect(RunLayout(root).ledger_file()) as conn:
        pids = {int(p) for (p,) in conn.execute("SELECT DISTINCT pid FROM spend")}
    assert pids and pids <= set(worker_pids)
