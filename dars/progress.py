"""Stage progress events inside one process, for the CLI's display only (never data).

A stage that runs a known number of units (shards, datasets, routers, experiments) reports
them through :class:`dars.flows.artifacts.StageProgress`, which also updates the stage's Prefect
progress artifact; every event is handed to the listeners here, in the process that runs the
flow. The CLI subscribes while a command runs and prints one line per stage. Work done in other
processes (the process and Dask runners) is seen when its task's future completes in the flow's
process, i.e. at shard granularity.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StageEvent:
    """One stage's count so far: ``done`` of ``total`` ``unit`` finished (``failed`` of them
    failed); the first event of a stage run has ``done == 0``."""

    stage: str
    done: int
    total: int
    unit: str
    failed: int = 0

    @property
    def finished(self) -> bool:
        return self.done >= self.total


Listener = Callable[[StageEvent], None]

_LOCK = threading.Lock()
_LISTENERS: list[Listener] = []


def subscribe(fn: Listener) -> Callable[[], None]:
    """Call ``fn`` with every stage event of this process from now on; returns the function
    that unsubscribes it."""
    with _LOCK:
        _LISTENERS.append(fn)

    def unsubscribe() -> None:
        with _LOCK:
            if fn in _LISTENERS:
                _LISTENERS.remove(fn)

    return unsubscribe


def emit(event: StageEvent) -> None:
    """Hand ``event`` to every listener (a failing listener never fails the stage)."""
    with _LOCK:
        listeners = list(_LISTENERS)
    for fn in listeners:
        try:
            fn(event)
        except Exception:  # noqa: BLE001, S110 - a display, never the run's outcome
            pass
