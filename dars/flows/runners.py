"""Where the shard tasks of a collection flow run: the one runner selection of the flows and CLI.

``runner`` (flow parameter; ``dars collect|rerun|run --runner``) is one of :data:`RUNNERS`:

* ``thread`` (default): a thread pool of ``workers`` threads in the flow's process;
* ``process``: a pool of ``workers`` spawned processes on this machine (litellm costs CPU per
  call, so processes scale the simulated pool on a machine with many cores);
* ``dask``: prefect-dask's ``DaskTaskRunner``. Without ``dask_address``, a ``LocalCluster`` of
  ``workers`` processes with one thread each, listening on 127.0.0.1 only, no dashboard, torn
  down with the flow; with ``dask_address`` (``tcp://host:8786``), an existing cluster whose
  workers may be on other machines (``workers`` is then the cluster's business).

Out-of-process workers (processes, Dask) make their calls themselves and report their task runs
to the Prefect API of the flow that submitted them; each reads and writes the run root directly,
and the root's SQLite ledger keeps the spend cap and leases shared between them. That holds for
every worker on the flow's machine (a LocalCluster, or a cluster whose workers all run there).
Workers on other machines need the root at the same absolute path on a shared POSIX filesystem
whose locks work, and the ledger's WAL journal cannot be shared across hosts (SQLite keeps its
index in shared memory), see deploy/README.md.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from dars.procs import exit_with_parent

RUNNERS: tuple[str, ...] = ("thread", "process", "dask")


def check_runner(runner: str, dask_address: str | None) -> None:
    """Raise ``ValueError`` (one line naming the allowed values) for a runner selection that
    cannot be run: an unknown ``runner``, a ``dask_address`` without ``runner="dask"``, or one
    that is no scheduler address (:func:`dask_address_problem`)."""
    if runner not in RUNNERS:
        raise ValueError(f"runner {runner!r} is not one of: {', '.join(RUNNERS)}")
    if dask_address is not None and runner != "dask":
        raise ValueError(f"dask_address needs runner 'dask' (got runner {runner!r})")
    if dask_address is not None and (problem := dask_address_problem(dask_address)):
        raise ValueError(f"dask_address {problem}")


def dask_address_problem(address: str) -> str | None:
    """Why ``address`` is no Dask scheduler address (``tcp://host:port``, or ``host:port``),
    or None when it is one. Whether a scheduler answers there is known only on connecting."""
    from distributed.comm import get_address_host

    try:
        get_address_host(address)
    except ValueError as exc:
        return f"{address!r} is not a Dask scheduler address tcp://HOST:PORT ({exc})"
    return None


def local_cluster_kwargs(workers: int) -> dict[str, Any]:
    """``distributed.LocalCluster`` arguments of the default Dask runner: ``workers`` worker
    processes with one thread each (a shard task already runs its calls concurrently; one
    shard per process keeps litellm's CPU work on separate cores), bound to the loopback
    interface, no scheduler or worker dashboard, this module preloaded (:func:`dask_setup`)."""
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
        "preload": [__name__],
    }


def dask_setup(worker: Any) -> None:
    """Dask worker preload (``dask worker --preload dars.flows.runners``; the LocalCluster of
    :func:`local_cluster_kwargs` has it): end the worker process without CPython's finalisation.

    Once litellm is imported, tearing down the interpreter's heap takes seconds (2–4 s measured
    on the 2-core project machine); a nanny kills a worker still alive 4 s after asking it to
    close, with a warning and a connection traceback on the console, so every Dask collection
    ended with both. Registered first, this handler runs last (exit handlers run in reverse):
    after Prefect's log and event services drained (they hook thread shutdown, before any exit
    handler) and after every handler registered later (litellm's log flush); it shuts logging
    down, flushes stdout/stderr and exits the process at once.
    """
    atexit.register(_exit_now)


def _exit_now() -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def task_runner(runner: str, workers: int, dask_address: str | None = None) -> Any:
    """The (not yet entered) Prefect task runner of one flow run's shard tasks; see the module
    docstring for what each ``runner`` means. A process-pool worker exits when the flow's
    process is gone (killed), instead of living on as an orphan; a LocalCluster's worker
    processes do the same by themselves (distributed holds a pipe to each and the worker exits
    when it closes)."""
    check_runner(runner, dask_address)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if runner == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers, initializer=exit_with_parent)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address is not None:
            return DaskTaskRunner(address=dask_address)
        shared = _SHARED.get()
        if shared is not None:
            return DaskTaskRunner(cluster_class=shared.borrow)
        return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(workers))
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(workers)


def _loopback(address: str) -> bool:
    """True when the Dask scheduler ``address`` (``tcp://host:port``) is on this machine's
    loopback interface (where a LocalCluster listens)."""
    from distributed.comm import get_address_host

    host = get_address_host(address)  # valid: checked by check_runner
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


@contextlib.contextmanager
def _api_for_workers(runner: str, dask_address: str | None) -> Iterator[None]:
    """Hand this process's Prefect API to out-of-process workers.

    When the API is Prefect's temporary local server (no ``PREFECT_API_URL``, the offline
    default), a worker would start a temporary server of its own on its first task (tens of
    seconds each, and its task runs would land in a database nobody sees), so the running
    server's URL is set for the runner's lifetime: the process and Dask runners serialise the
    current settings with every task they submit, and their workers' task runs and logs then
    reach it. That server listens on 127.0.0.1 only, which Dask workers on other machines cannot
    reach: with a ``dask_address`` that is not a loopback address the flow says so in its log.
    """
    from prefect import get_run_logger
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if runner == "thread" or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the process-wide instance the flow run is using
    server.start()  # no-op when it is running
    if dask_address is not None and not _loopback(dask_address):
        get_run_logger().warning(
            "Dask cluster %s with Prefect's temporary server %s: workers on other machines "
            "cannot reach it (loopback only); set PREFECT_API_URL to a server they can reach",
            dask_address,
            server.api_url,
        )
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


@contextlib.contextmanager
def open_runner(runner: str, workers: int, dask_address: str | None = None) -> Iterator[Any]:
    """The entered task runner of one flow run (see :func:`task_runner`), its workers reporting
    to this process's Prefect API. Call it inside a flow run."""
    with (
        _api_for_workers(runner, dask_address),
        task_runner(runner, workers, dask_address) as entered,
    ):
        yield entered


class _SharedLocalCluster:
    """One LocalCluster (:func:`local_cluster_kwargs`) for the stages of one flow run, started
    when the first of them submits a task (a run with nothing to do starts none)."""

    def __init__(self, workers: int) -> None:
        self._kwargs = local_cluster_kwargs(workers)
        self._cluster: Any = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Any]:
        """The cluster, started on first use; what prefect-dask enters as its ``cluster_class``
        (leaving it closes nothing: :meth:`close` does, once every stage is done)."""
        with self._lock:
            if self._cluster is None:
                from distributed import LocalCluster

                self._cluster = LocalCluster(**self._kwargs)
        yield self._cluster

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()


_SHARED: contextvars.ContextVar[_SharedLocalCluster | None] = contextvars.ContextVar(
    "dars_shared_dask_cluster", default=None
)


@contextlib.contextmanager
def shared_dask_cluster(runner: str, workers: int, dask_address: str | None) -> Iterator[None]:
    """Let the stages of one flow that runs several (``collect``: rewrite, then decode) share
    one Dask LocalCluster when ``runner="dask"`` without ``dask_address``: its worker processes
    start once, when the first stage has a shard to run, and stop when this context ends. Does
    nothing for other runners or an existing cluster."""
    check_runner(runner, dask_address)
    if runner != "dask" or dask_address is not None:
        yield
        return
    shared = _SharedLocalCluster(workers)
    token = _SHARED.set(shared)
    try:
        yield
    finally:
        _SHARED.reset(token)
        shared.close()


__all__ = [
    "RUNNERS",
    "check_runner",
    "dask_address_problem",
    "dask_setup",
    "local_cluster_kwargs",
    "open_runner",
    "shared_dask_cluster",
    "task_runner",
]
