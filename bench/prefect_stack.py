"""A real Prefect deployment stack on this machine, for the deployment tests and the trigger bench.

:class:`PrefectServer` runs ``prefect server start`` on 127.0.0.1 and a free port, on SQLite (in
a temporary ``PREFECT_HOME``) or on PostgreSQL through ``deploy/postgres-server.sh`` (the one-line
route of ``deploy/README.md``); :class:`Stack` adds what a platform team does next — the ``dars``
process work pool, ``prefect deploy --all --prefect-file deploy/prefect.yaml`` and a process
worker started outside the repository without ``DARS_HOME`` — and reads back through the Prefect
API what the trigger chain ran (:meth:`Stack.wait_chain`). Every process is started in its own
process group and stopped with it (``with`` blocks; also on an exception).

    with PrefectServer(tmp, "sqlite") as server, Stack(server, tmp) as stack:
        stack.deploy()
        stack.start_worker()
        run_id = stack.run_deployment("collect/dars-collect", config=…, root=…)
        chain = stack.wait_chain(root, since)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
#: The deployments of the trigger chain, in order, and their flows' names.
CHAIN = ("collect", "supervise", "train", "evaluate", "report")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """The environment of every process the stack starts: this one's without any ``PREFECT_*``
    setting or ``DARS_HOME`` (the stack sets what it needs), this interpreter's ``bin`` first on
    ``PATH``, the repository first on ``PYTHONPATH`` (the code under test runs, also in a worker
    whose editable install points elsewhere), the offline defaults, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DARS_HOME"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        HF_HUB_OFFLINE="1",
        COLUMNS="200",  # CLI output (Rich) unwrapped, so messages can be matched
    )
    env.update(extra)
    return env


def _stop_group(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM the process group of ``proc`` (it leads one), SIGKILL it after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def postgres_missing() -> str | None:
    """Why a PostgreSQL-backed server cannot run here (a skip reason), or None."""
    pg_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not shutil.which("initdb") and not pg_bins:
        return "PostgreSQL's initdb is not installed (apt-get install -y postgresql)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser: cannot run initdb as the postgres user"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
    return None


class PrefectServer:
    """``prefect server start`` on 127.0.0.1 and a free port, SQLite or PostgreSQL backed.

    ``workdir`` holds its ``PREFECT_HOME`` (and, for PostgreSQL, the cluster in ``pg/``; as root
    the directory must be reachable by the ``postgres`` user). Entering waits for
    ``/api/health`` up to ``startup_timeout`` seconds (a loaded 2-core machine has needed more
    than a minute); leaving stops the process group (for PostgreSQL the script stops the
    cluster when its server exits; ``pg_ctl stop`` runs as well in case it was killed)."""

    def __init__(self, workdir: Path, backend: str = "sqlite", startup_timeout: float = 600):
        if backend not in ("sqlite", "postgres"):
            raise ValueError(f"backend must be sqlite or postgres, got {backend!r}")
        self.workdir = Path(workdir)
        self.backend = backend
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.api_url = f"http://{HOST}:{self.port}/api"
        self.home = self.workdir / "prefect-home"
        self.log = self.workdir / f"server-{backend}.log"
        self.pg_dir = self.workdir / "pg"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a process talking to this server (CLI, worker, ``dars``)."""
        return base_env(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url, **extra)

    def __enter__(self) -> PrefectServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ["--host", HOST, "--port", str(self.port)]
        if self.backend == "sqlite":
            cmd = [str(BIN / "prefect"), "server", "start", *args]
            env = base_env(PREFECT_HOME=str(self.home))
        else:
            cmd = ["bash", str(REPO / "deploy" / "postgres-server.sh"), *args]
            env = base_env(
                PREFECT_HOME=str(self.home),
                PREFECT_PG_DIR=str(self.pg_dir),
                PREFECT_PG_PORT=str(free_port()),
            )
        t0 = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prefect server ({self.backend}) exited with {self.proc.returncode}:\n"
                    + tail(self.log)
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise TimeoutError(
            f"prefect server ({self.backend}) not healthy after {self.startup_timeout:.0f} s:\n"
            + tail(self.log)
        )

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
        if self.backend == "postgres" and (self.pg_dir / "data" / "postmaster.pid").exists():
            pg_ctl = shutil.which("pg_ctl") or str(
                sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
            )
            cmd = [pg_ctl, "-D", str(self.pg_dir / "data"), "-m", "immediate", "stop"]
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            subprocess.run(cmd, capture_output=True, timeout=60)


class Stack:
    """The work pool, deployments and a process worker on ``server``; API reads for tests."""

    def __init__(self, server: PrefectServer, workdir: Path, query_seconds: float = 1):
        self.server = server
        self.workdir = Path(workdir)
        self.query_seconds = query_seconds
        self.worker: subprocess.Popen | None = None
        self.worker_log = self.workdir / f"worker-{server.backend}.log"

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.worker is not None:
            _stop_group(self.worker)

    # -- setting up ---------------------------------------------------------------------------
    def prefect(self, *args: str, cwd: Path = REPO, timeout: float = 600) -> str:
        """Run the ``prefect`` CLI against the server; its output (raises with it on failure)."""
        proc = subprocess.run(
            [str(BIN / "prefect"), *args],
            cwd=cwd,
            env=self.server.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"prefect {' '.join(args)} exited with {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def deploy(self, prefect_file: Path = REPO / "deploy" / "prefect.yaml") -> None:
        """``prefect work-pool create dars --type process`` and ``prefect deploy --all``."""
        self.prefect("work-pool", "create", "dars", "--type", "process", "--overwrite")
        self.prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file))

    def start_worker(self) -> None:
        """A process worker on pool ``dars``, started in a directory of its own (not the
        repository) without ``DARS_HOME``: the pull step must find the code by itself. It asks
        for work every ``query_seconds`` (Prefect's default is 10 s)."""
        cwd = self.workdir / f"worker-{self.server.backend}"
        cwd.mkdir(parents=True, exist_ok=True)
        env = self.server.env(PREFECT_WORKER_QUERY_SECONDS=str(self.query_seconds))
        with self.worker_log.open("wb") as out:
            self.worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "dars"],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # -- the API ------------------------------------------------------------------------------
    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.server.api_url)

    def run_deployment(self, name: str, **parameters: Any) -> UUID:
        """Start deployment ``name`` (``flow/deployment``) with ``parameters`` as
        ``prefect deployment run NAME --param k=v …`` does; returns the flow run id."""
        args = ["deployment", "run", name]
        for key, value in parameters.items():
            args += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
        out = self.prefect(*args)
        for line in out.splitlines():
            if "UUID:" in line:
                return UUID(line.split("UUID:", 1)[1].strip())
        raise RuntimeError(f"no flow run id in the output of prefect deployment run:\n{out}")

    def deployment_runs(self, since: datetime) -> list[tuple[str, Any]]:
        """(stage, flow run) of the ``dars-<stage>`` deployments' runs created at or after
        ``since``, oldest first (the stage comes from the deployment, so a run that crashed
        before it was named is found too)."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterExpectedStartTime,
        )
        from prefect.client.schemas.sorting import FlowRunSort

        with self.client() as c:
            stages = {
                d.id: d.name.removeprefix("dars-")
                for d in c.read_deployments()
                if d.name.removeprefix("dars-") in CHAIN
            }
            runs = c.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=list(stages)),
                    expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            )
        return [(stages[r.deployment_id], r) for r in runs]

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        """Poll ``check`` every second until it returns something truthy; raise with the
        worker's log after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited while waiting for {what}:\n" + self.logs())
            time.sleep(1)
        raise TimeoutError(f"no {what} after {timeout:.0f} s; worker log:\n" + self.logs())

    def logs(self) -> str:
        return tail(self.worker_log, 60)

    def wait_final(self, flow_run_id: UUID, timeout: float = 600) -> Any:
        """The flow run once it is in a final state."""

        def done() -> Any:
            with self.client() as c:
                run = c.read_flow_run(flow_run_id)
            return run if run.state_type and run.state_type.value in FINAL else None

        return self.wait_for(f"final state of flow run {flow_run_id}", done, timeout)

    def wait_chain(self, root: str, since: datetime, timeout: float = 900) -> dict[str, Any]:
        """Stage → the first run of its deployment with parameter ``root`` started since
        ``since``, once the report run is final or some stage ended otherwise than Completed
        (returned as far as it got; the caller asserts)."""

        def chain() -> dict[str, Any] | None:
            by_stage: dict[str, Any] = {}
            for stage, run in self.deployment_runs(since):
                if (run.parameters or {}).get("root") == root:
                    by_stage.setdefault(stage, run)
            ended = [r for r in by_stage.values() if r.state_type and r.state_type.value in FINAL]
            report = by_stage.get("report")
            if any(r.state_type.value != "COMPLETED" for r in ended) or (
                report is not None and report in ended
            ):
                return by_stage
            return None

        return self.wait_for(f"trigger chain on {root}", chain, timeout)


def chain_timing(runs: dict[str, Any]) -> dict[str, float]:
    """Seconds from the collect run's end to the report run's end (the report written), and per
    trigger hop from the upstream run's end to the downstream run's start."""
    out = {"collect_end_to_report_s": (runs["report"].end_time - runs["collect"].end_time)}
    out = {k: v.total_seconds() for k, v in out.items()}
    for up, down in zip(CHAIN, CHAIN[1:], strict=False):
        out[f"{up}_to_{down}_start_s"] = (runs[down].start_time - runs[up].end_time).total_seconds()
    for stage in CHAIN:
        out[f"{stage}_run_s"] = (runs[stage].end_time - runs[stage].start_time).total_seconds()
    return out


def tiny_config(path: Path, root: Path | str) -> Path:
    """configs/demo.yaml cut to the smallest run every stage accepts: the multiple-choice
    benchmark (8 train + 4 test queries), the first two simulated models, 2 × 2 train protocol,
    4-query shards, TF-IDF similarity, the kNN family only (also for the ablation), 4 single-shot
    draws, 20 bootstrap resamples and two-point sweeps. Written with ``root`` as its own root."""
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["benchmarks"] = [
        {**b, "n_train": 8, "n_test": 4, "options": {"n_items": 12}}
        for b in data["benchmarks"]
        if b["name"] == "demo_mc"
    ]
    data["pool"]["models"] = data["pool"]["models"][:2]
    data["protocol"].update(train_rewrites=2, train_decodes=2, test_rewrites=1, test_decodes=2)
    data.update(
        name="tiny",
        root=str(root),
        shard_size=4,
        encoder="tfidf",
        single_shot_draws=4,
        families=["knn"],
        evaluation={
            "ablation_family": "knn",
            "n_boot": 20,
            "lam_grid": [0.0, 0.05],
            "beta_grid": [0.0, 0.2],
            "budgets": [0.1, 0.5],
        },
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def running_stack(workdir: Path, backend: str, query_seconds: float = 1) -> Iterator[Stack]:
    """Server + deployments + worker, stopped on exit."""
    with PrefectServer(workdir, backend) as server, Stack(server, workdir, query_seconds) as st:
        st.deploy()
        st.start_worker()
        yield st
