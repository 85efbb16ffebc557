"""One event loop per process for every LLM call.

litellm keeps process-global async state (its logging worker, cached HTTP clients) bound to the
first event loop that uses it; calling it from several loops (one ``asyncio.run`` per Prefect
worker thread) breaks that state. Synchronous callers therefore hand their coroutines to one
long-lived loop running in a daemon thread, and block on the result.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_lock = threading.Lock()


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _lock:
        # A forked child inherits ``_loop`` but not the thread running it: submitting to it
        # would block forever, so a new process starts its own loop.
        if _loop is None or _loop.is_closed() or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="dars-llm-loop", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the process-wide LLM loop and return its result (or raise its error)."""
    return asyncio.run_coroutine_threadsafe(coro, _get_loop()).result()
