"""Where a model's API key comes from: an environment variable or a Prefect ``Secret`` block.

``api_key(spec)`` is the key the client sends to ``spec``: the value of the environment variable
``spec.api_key_env``, or of the Prefect ``Secret`` block ``spec.api_key_secret`` (read with
``Secret.load(name).get()`` through the Prefect API the process talks to), or None for a model
that names neither. Every key read is remembered (:func:`dars.llm.errors.remember_secret`), so it
is scrubbed from every error, log record and completion from then on.

A block is read once per process and kept in memory only (this module's cache): never in a
flow or task parameter, a log, a file. A block that cannot be read (missing, not a string, the
API unreachable) fails the call the way a missing environment variable does: ``LLMCallError``
of kind ``missing_key`` before any request, whose message names the model and the block and
says how to create it. That failure is remembered for :data:`SECRET_RETRY_S` seconds, so the
calls of a shard fail at once instead of each asking the API again, while a block created
meanwhile is found by the next run of a long-lived process.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dars.llm.errors import LLMCallError, remember_secret, scrub

if TYPE_CHECKING:
    from dars.config import ModelSpec

#: Seconds a failed block read is remembered before the next call asks the Prefect API again.
SECRET_RETRY_S = 30.0

_VALUES: dict[str, str] = {}
_FAILURES: dict[str, tuple[float, str]] = {}
# One lock for every block: concurrent first calls wait for the one read instead of each
# asking the API (a pool has a handful of blocks, each read once).
_LOCK = threading.Lock()


def _how_to_create(name: str) -> str:
    return (
        f"create it with `prefect block create secret` or, in Python, "
        f"Secret(value=...).save({name!r}) (from prefect.blocks.system import Secret)"
    )


class _NotAKey(Exception):
    """The block exists but holds no usable key (a JSON value, an empty string)."""


def _load_block(name: str) -> str:
    """The string held by the Prefect ``Secret`` block ``name`` (Prefect API I/O)."""
    from prefect.blocks.system import Secret

    # ``_sync=True``: ``Secret.load`` returns a coroutine when the calling thread runs an
    # event loop; callers in async code reach this function through a worker thread.
    value = Secret.load(name, _sync=True).get()
    if not isinstance(value, str) or not value:
        raise _NotAKey(f"holds {type(value).__name__ if value else 'an empty value'}, not a key")
    return value


def _secret(spec: ModelSpec) -> str:
    name = spec.api_key_secret
    assert name is not None
    with _LOCK:
        value = _VALUES.get(name)
        if value is not None:
            return value
        failed = _FAILURES.get(name)
        if failed is None or time.monotonic() - failed[0] >= SECRET_RETRY_S:
            try:
                value = _load_block(name)
            except _NotAKey as exc:
                reason = f"Prefect Secret block {name!r} {exc}; {_how_to_create(name)}"
            except Exception as exc:  # missing, or the API unreachable or refusing
                if isinstance(exc, ValueError) and "Unable to find block document" in str(exc):
                    reason = f"Prefect Secret block {name!r} not found; {_how_to_create(name)}"
                else:
                    reason = (
                        f"Prefect Secret block {name!r} cannot be read ({type(exc).__name__}: "
                        f"{scrub(str(exc))[:80]}); check that the Prefect API (PREFECT_API_URL) "
                        "is up and has the block"
                    )
            else:
                remember_secret(value)
                _VALUES[name] = value
                _FAILURES.pop(name, None)
                return value
            failed = _FAILURES[name] = (time.monotonic(), reason)
    raise LLMCallError("missing_key", failed[1], model=spec.name, attempts=0)


def api_key(spec: ModelSpec) -> str | None:
    """The key to send to ``spec`` (see the module docstring), remembered for scrubbing; None
    when it names no key source. Raises ``LLMCallError`` (kind ``missing_key``) when the
    environment variable is unset or empty, or the Secret block cannot be read. May block on
    the Prefect API the first time a block is read; async callers use :func:`aapi_key`."""
    if spec.api_key_env:
        value = os.environ.get(spec.api_key_env)
        if not value:
            raise LLMCallError(
                "missing_key",
                f"environment variable {spec.api_key_env} is not set",
                model=spec.name,
                attempts=0,
            )
        remember_secret(value)
        return value
    if spec.api_key_secret:
        return _secret(spec)
    return None


async def aapi_key(spec: ModelSpec) -> str | None:
    """:func:`api_key` for async code: a block not yet in memory is read in a worker thread,
    so the event loop (other models' calls) never waits on the Prefect API."""
    if spec.api_key_secret and spec.api_key_secret not in _VALUES:
        return await asyncio.to_thread(api_key, spec)
    return api_key(spec)


def remember_keys(specs: Iterable[ModelSpec | None]) -> None:
    """Read and remember the key of every spec that names one, so that a key is scrubbed from
    every call's text, errors and logs even when it was never read for that call: the
    rewriter's key echoed in a pool model's answer, a pool key echoed before that model was
    first called. A key that cannot be read is skipped here; the model's calls report it."""
    for spec in specs:
        if spec is not None:
            try:
                api_key(spec)
            except LLMCallError:
                continue


def forget_secrets() -> None:
    """Drop every block value and failure this process holds in memory (the next call reads
    the blocks again); the values stay scrubbed."""
    with _LOCK:
        _VALUES.clear()
        _FAILURES.clear()
