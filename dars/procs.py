"""Child processes die with the ``dars`` process that started them (issue 12: a SIGKILLed CLI left
Prefect's temporary server and the math-verify workers running, reparented to PID 1).

A SIGKILLed process runs no cleanup, so each child has to notice by itself:

* our own Python children (the math-verify workers of :mod:`dars.benchmarks.mathequiv`, the
  ``--processes`` shard workers) call :func:`exit_with_parent` first thing: a daemon thread that
  exits the process as soon as its parent changes (it was reparented: the parent is gone);
* Prefect's temporary API server is Prefect's child, started with ``subprocess.Popen`` by
  ``prefect.server.api.server.SubprocessASGIServer``; :func:`own_prefect_server` puts a subclass
  of it in Prefect's per-process instance slot (what ``prefect.testing`` does for its test
  server), whose server gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux when it is started
  from the main thread.

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, not the process: that is
why it is used only for a server the main thread starts (it lives as long as the CLI), and why
our own children watch their parent process instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

#: How often a child checks whether its parent is still the process that started it.
WATCH_INTERVAL_S = 0.5

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent(interval_s: float = WATCH_INTERVAL_S) -> None:
    """Exit this process (status 0, no cleanup) once its parent is gone.

    Starts one daemon thread per process (later calls do nothing). Picklable and argument-free
    by default, so it serves as a ``ProcessPoolExecutor`` initializer.
    """
    global _WATCHING
    with _WATCH_LOCK:
        if _WATCHING:
            return
        _WATCHING = True
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                # os._exit: atexit handlers and flushing could block on the pipes the dead
                # parent held, and nothing in this process outlives it usefully.
                os._exit(0)

    threading.Thread(target=watch, name="dars-exit-with-parent", daemon=True).start()


_WATCHING = False
_WATCH_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _prctl() -> Any:
    """libc's ``prctl``, looked up once in the parent (never in a forked child), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


def kill_with_this_thread() -> Callable[[], None] | None:
    """A ``Popen`` ``preexec_fn`` giving the child SIGKILL when the calling thread ends (Linux
    ``PR_SET_PDEATHSIG``), or None where that does not exist. Call it in the thread that starts
    the child, and only from one that lives as long as the child should (the main thread)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Runs in the forked child before exec: no imports, no locks, only the libc call.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call: nobody would kill us
            os._exit(1)

    return preexec


def own_prefect_server() -> str | None:
    """Make the temporary Prefect server this process starts (if it starts one) die with it.

    Returns the URL when ``PREFECT_API_URL`` (environment or Prefect profile) points at a
    server of the user's: Prefect uses that one and starts none, and nothing is done. Does
    nothing either (returns None) when a server for this process was already created.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()  # env, profile or temporary settings
    if url:
        return str(url)
    from prefect.server.api import server as prefect_server

    base = prefect_server.SubprocessASGIServer
    if None in base._instances:
        return None

    class _OwnedServer(base):  # type: ignore[misc, valid-type]
        """Prefect's temporary server, started with a parent-death signal when the main
        thread starts it."""

        def _run_uvicorn_command(self) -> Any:
            preexec = (
                kill_with_this_thread()
                if threading.current_thread() is threading.main_thread()
                else None
            )
            if preexec is None:
                return super()._run_uvicorn_command()
            # Prefect builds the command line and environment; only its ``subprocess.Popen``
            # is swapped, in its module's namespace and for this call, so the server starts
            # exactly as Prefect starts it, plus the preexec_fn.
            shim = types.SimpleNamespace(**vars(subprocess))
            shim.Popen = functools.partial(subprocess.Popen, preexec_fn=preexec)
            with _SHIM_LOCK:
                prefect_server.subprocess = shim
                try:
                    return super()._run_uvicorn_command()
                finally:
                    prefect_server.subprocess = subprocess

    _OwnedServer()  # registers itself as the instance every SubprocessASGIServer() returns
    return None


_SHIM_LOCK = threading.Lock()
