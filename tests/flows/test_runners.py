"""Where the shard tasks of a collection run (issue 13, Dask scale-out): the one runner selection
(``runner`` = thread | process | dask, ``dask_address``) of the flows and the CLI.

The same tiny simulated collection run with threads and with prefect-dask's ``DaskTaskRunner``
on a LocalCluster of 2 worker processes gives an identical store; the Dask run's shards ran in
the worker processes (the ledger records each call's pid), reported one task run per shard to
the parent's Prefect server, and left no worker process behind. Bad runner options are one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from dars.cli import app
from dars.flows.runners import RUNNERS, check_runner
from dars.plan import KEY
from dars.storage import RunLayout, scan_observations, scan_rewrites
from tests.bench.conftest import load_bench
from tests.flows.test_cli import _tiny_config
from tests.flows.test_collect import tiny_demo_config

cli = CliRunner()
REPO = Path(__file__).resolve().parents[2]

#: Columns that differ between two runs of the same collection (who wrote a row, when, how fast).
RUN_SPECIFIC = ("run_id", "created_at", "latency_s")


def _store(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(observations, rewrites) of ``root`` without their run-specific columns, sorted by key."""
    obs = scan_observations(root).collect().drop(RUN_SPECIFIC).sort(list(KEY))
    rw = scan_rewrites(root).collect().drop("created_at")
    return obs, rw.sort("dataset", "split", "query_id", "rewrite_id")


def _call_pids(root: Path, stage: str) -> set[int]:
    """Process ids of every ``stage`` (rewrite | decode) call the root's ledger recorded (the
    process that made the call)."""
    with sqlite3.connect(RunLayout(root).ledger_file()) as conn:
        sql = "SELECT DISTINCT pid FROM spend WHERE stage = ?"
        return {int(p) for (p,) in conn.execute(sql, (stage,))}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _shard_task_runs(flow_name: str, root: Path) -> list[tuple[Any, int]]:
    """(task run, how many log lines the server holds for it) for every task run of the flow
    runs of ``flow_name`` tagged with run root ``root``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
        LogFilter,
        LogFilterTaskRunId,
    )

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"root:{root}"])),
        )
        logs = await client.read_logs(
            log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[t.id for t in runs]))
        )
    per_run = Counter(log.task_run_id for log in logs)
    return [(t, per_run[t.id]) for t in runs]


@pytest.mark.flow
def test_dask_local_cluster_collects_the_thread_runners_store(
    prefect_harness, tmp_path, monkeypatch
):
    import distributed

    from dars.flows.collect import collect_flow

    started = []  # the LocalClusters started, by their arguments
    real_init = distributed.LocalCluster.__init__

    def counting_init(self, *args, **kwargs):
        started.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(distributed.LocalCluster, "__init__", counting_init)
    results = {}
    for runner in ("thread", "dask"):
        root = tmp_path / runner
        config = tiny_demo_config(tmp_path / f"{runner}.yaml", root)
        results[runner] = collect_flow(str(config), str(root), workers=2, runner=runner)

    # One LocalCluster for both stages: 2 processes, 1 thread each, loopback, no dashboard.
    assert len(started) == 1
    assert started[0]["n_workers"] == 2 and started[0]["threads_per_worker"] == 1
    assert started[0]["host"] == "127.0.0.1" and started[0]["dashboard_address"] is None
    dask = results["dask"]
    # tiny_demo_config: 2 benchmarks x 2 splits rewrite shards, x 2 models decode shards.
    assert dask["rewrite"]["tasks"] == 4 and dask["decode"]["tasks"] == 8
    assert dask["decode"]["ok"] == results["thread"]["decode"]["ok"] == 2 * (32 + 12)
    assert dask["rewrite"]["failures"] == dask["decode"]["failures"] == []
    thread_obs, thread_rw = _store(tmp_path / "thread")
    dask_obs, dask_rw = _store(tmp_path / "dask")
    assert thread_obs.height == 2 * (32 + 12)
    assert_frame_equal(dask_obs, thread_obs)
    assert_frame_equal(dask_rw, thread_rw)

    # The calls were made in the Dask worker processes, not in this one: the same two for both
    # stages (one LocalCluster), gone with the flow.
    workers = _call_pids(tmp_path / "dask", "rewrite") | _call_pids(tmp_path / "dask", "decode")
    assert 1 <= len(workers) <= 2 and os.getpid() not in workers
    assert _call_pids(tmp_path / "thread", "decode") == {os.getpid()}
    assert not [pid for pid in workers if _alive(pid)]

    # Each shard is one task run on this session's Prefect server (the workers were handed its
    # URL), named after its partition, completed, with its log lines.
    for flow_name, prefix, n in (("decode", "decode ", 8), ("rewrite", "rewrite ", 4)):
        runs = [
            (t, logs)
            for t, logs in asyncio.run(_shard_task_runs(flow_name, tmp_path / "dask"))
            if t.name.startswith(prefix)
        ]
        assert len(runs) == n, [t.name for t, _ in runs]
        assert len({t.name for t, _ in runs}) == n
        assert all(t.state.is_completed() for t, _ in runs), [t.state for t, _ in runs]
        assert all(logs >= 1 for _, logs in runs), [(t.name, logs) for t, logs in runs]

    # A collection with nothing left to do starts no cluster.
    again = collect_flow(str(tmp_path / "dask.yaml"), str(tmp_path / "dask"), 2, "dask")
    assert again["rewrite"]["tasks"] == again["decode"]["tasks"] == 0
    assert len(started) == 1


@pytest.fixture
def dask_cluster(tmp_path) -> Iterator[tuple[str, list[int]]]:
    """An existing Dask cluster on loopback, started as deploy/README.md starts one (``dask
    scheduler`` and ``dask worker --nworkers 2 --nthreads 1 --preload dars.flows.runners``);
    yields (scheduler address, worker pids); stopped afterwards."""
    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "dask-home")}
    env.pop("PREFECT_API_URL", None)  # workers learn the API from each task they are given
    dask = [str(Path(sys.executable).parent / "dask")]
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [*dask, "worker", address, "--host", "127.0.0.1", "--no-dashboard"]
                + ["--nworkers", "2", "--nthreads", "1", "--preload", "dars.flows.runners"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        with Client(address, timeout=300) as client:
            client.wait_for_workers(2, timeout=300)
            pids = sorted(client.run(os.getpid).values())
        yield address, pids
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.flow
def test_an_existing_dask_cluster_runs_the_shards(prefect_harness, dask_cluster, tmp_path):
    from distributed import Client

    from dars.flows.collect import collect_flow

    address, worker_pids = dask_cluster
    root = tmp_path / "run"
    config = tiny_demo_config(tmp_path / "tiny.yaml", root)
    out = collect_flow(str(config), str(root), 2, "dask", address)

    assert out["decode"]["ok"] == 2 * (32 + 12) and out["decode"]["failures"] == []
    called = _call_pids(root, "rewrite") | _call_pids(root, "decode")
    assert called and called <= set(worker_pids)
    runs = asyncio.run(_shard_task_runs("decode", root))
    assert sum(t.name.startswith("decode ") and t.state.is_completed() for t, _ in runs) == 8
    # The cluster is the user's: the flow leaves it running.
    with Client(address, timeout=60) as client:
        assert sorted(client.run(os.getpid).values()) == worker_pids


def test_check_runner_names_the_allowed_values():
    assert RUNNERS == ("thread", "process", "dask")
    for runner in RUNNERS:
        check_runner(runner, None)
    check_runner("dask", "tcp://127.0.0.1:8786")
    with pytest.raises(ValueError) as bad:
        check_runner("daskk", None)
    assert str(bad.value) == "runner 'daskk' is not one of: thread, process, dask"
    with pytest.raises(ValueError, match="dask_address needs runner 'dask'"):
        check_runner("thread", "tcp://127.0.0.1:8786")
    with pytest.raises(ValueError) as bad:
        check_runner("dask", "tcp://scheduler")
    assert str(bad.value) == (
        "dask_address 'tcp://scheduler' is not a Dask scheduler address tcp://HOST:PORT "
        "(missing port number in address 'scheduler')"
    )


def test_flows_refuse_a_bad_runner_before_any_work(tmp_path):
    from dars.flows.collect import collect_flow

    config = _tiny_config(tmp_path)
    with pytest.raises(ValueError, match="not one of: thread, process, dask"):
        collect_flow.fn(str(config), runner="daskk")
    assert not (tmp_path / "run").exists()


def _one_line_error(argv: list[str]) -> str:
    result = cli.invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("command", ["collect", "rerun", "run"])
def test_cli_rejects_bad_runner_options_in_one_line(tmp_path, command):
    config = str(_tiny_config(tmp_path))
    base = [command, "-c", config] + (["--failed"] if command == "rerun" else [])
    line = _one_line_error([*base, "--runner", "daskk"])
    assert line == "bad option: --runner 'daskk' is not one of: thread, process, dask"
    line = _one_line_error([*base, "--dask-address", "tcp://127.0.0.1:8786"])
    assert line == ("bad option: --dask-address needs --runner dask (got --runner thread)")
    line = _one_line_error([*base, "--runner", "dask", "--dask-address", "scheduler"])
    assert line.startswith("bad option: --dask-address 'scheduler' is not a Dask scheduler")
    line = _one_line_error([*base, "--processes", "--runner", "dask"])
    assert "--processes" in line and "--runner process" in line
    assert not (tmp_path / "run").exists()


def test_processes_is_a_deprecated_alias_of_runner_process(tmp_path, monkeypatch):
    seen = {}

    def collect_flow(exp, root, workers, runner, dask_address, run_id, only=None):
        seen.update(workers=workers, runner=runner, dask_address=dask_address)
        raise RuntimeError("stop here")

    monkeypatch.setattr("dars.flows.collect.collect_flow", collect_flow)
    config = str(_tiny_config(tmp_path))
    cli.invoke(app, ["collect", "-c", config, "--processes", "--workers", "3"])
    assert seen == {"workers": 3, "runner": "process", "dask_address": None}
    cli.invoke(app, ["collect", "-c", config, "--runner", "dask", "--dask-address", "tcp://h:1"])
    assert seen == {"workers": 4, "runner": "dask", "dask_address": "tcp://h:1"}
    out = cli.invoke(app, ["collect", "--help"]).output
    help_text = " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())  # Rich's box, wrapped lines
    assert "Deprecated: same as --runner process" in help_text


@pytest.mark.flow
def test_bench_runners_quick_compares_thread_and_dask(prefect_harness, tmp_path, capsys):
    # Thread and Dask only: a process pool takes tens of seconds to start per flow run on a small
    # machine, too slow for the suite (the full bench measures all three side by side).
    bench = load_bench("bench_runners")
    out = tmp_path / "bench" / "runners.json"
    result = bench.main(["--quick", "--runners", "thread,dask", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "per-shard overhead" in printed and "stores identical across runners: yes" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    # Tiny shards: (2 train + 1 test query) x (1 benchmark x 2 models | 2 x 6), one call each;
    # normal: 2 train shards x 2 models of 10 queries x 3 x 3 calls, 2 one-call test shards.
    for size, shards in (("small", 6), ("large", 36)):
        rows = result["tiny"][size]
        assert [(r["runner"], r["shards"], r["calls"]) for r in rows] == [
            ("thread", shards, shards),
            ("dask", shards, shards),
        ]
    assert [(r["runner"], r["shards"], r["calls"]) for r in result["normal"]] == [
        ("thread", 6, 4 * 90 + 2),
        ("dask", 6, 4 * 90 + 2),
    ]
    thread, dask = result["overhead"]
    assert (thread["runner"], dask["runner"]) == ("thread", "dask")
    assert thread["extra_per_shard_ms"] == 0
    assert dask["extra_per_shard_ms"] == pytest.approx(
        dask["per_shard_ms"] - thread["per_shard_ms"]
    )
    small, large = result["tiny"]["small"][1], result["tiny"]["large"][1]
    slope_ms = 1000 * (large["wall_s"] - small["wall_s"]) / (large["shards"] - small["shards"])
    assert dask["per_shard_ms"] == pytest.approx(slope_ms)
    assert result["stores_identical"] is True
