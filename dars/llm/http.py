"""The direct HTTP transport: OpenAI-compatible chat completions over one shared aiohttp session.

A model with ``transport: http`` (an ``openai/<model>`` route: vLLM, llama.cpp, OpenAI itself)
is called here instead of through ``litellm.acompletion``: one ``POST {api_base}/chat/completions``
per attempt, with the body litellm would send for that route (``model`` without the ``openai/``
prefix, the messages, ``temperature``, ``top_p``, ``max_tokens``, and the model's
``extra_params`` as they are). The client (:mod:`dars.llm.client`) keeps everything else: its
retries, limits, key handling, cost (litellm's cost map) and the parsing of the answer.

What a failure raises, for :func:`dars.llm.errors.classify_exception`:

* an error status: :class:`~dars.llm.errors.HTTPStatusError`, classified from the status and
  the error body the way litellm classifies the same answer
  (:func:`~dars.llm.errors.http_error_kind`), with the response headers (Retry-After);
* a body that is not JSON: ``json.JSONDecodeError`` (``malformed``);
* no connection, a reset or a cut body: ``ConnectionError`` (``connection``);
* the timeout: ``TimeoutError`` (``timeout``).

One ``aiohttp.ClientSession`` per event loop (connections are reused across calls and models);
the process-wide LLM loop (:mod:`dars.llm.loop`) keeps its session for the life of the process
(closed at exit), and a session whose loop has closed (``asyncio.run`` in tests) is released
when the next one is made. ``aiohttp`` is imported on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from dars.llm.errors import HTTPStatusError, http_error_kind

#: Where ``transport: http`` posts when the model sets no ``api_base``.
OPENAI_API_BASE = "https://api.openai.com/v1"

#: Connections kept per session (the client's own limits decide the concurrency).
MAX_CONNECTIONS = 256


class HttpTransport:
    """Posts chat-completion requests; one session per event loop."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._exit_hook = False

    def session(self) -> Any:
        """The running loop's session (made on first use)."""
        loop = asyncio.get_running_loop()
        sess = self._sessions.get(loop)
        if sess is None or sess.closed:
            import aiohttp

            with self._lock:
                self._release_stale()
                sess = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ttl_dns_cache=300),
                    json_serialize=json.dumps,
                    # Not trust_env: aiohttp would then read ~/.netrc in a worker thread on
                    # every request. The HTTP transport ignores HTTP(S)_PROXY; reach a proxied
                    # endpoint through litellm (``transport: litellm``).
                    trust_env=False,
                )
                self._sessions[loop] = sess
                if not self._exit_hook:
                    atexit.register(self._close_at_exit)
                    self._exit_hook = True
        return sess

    def _release_stale(self) -> None:
        """Mark the sessions of closed loops closed (their sockets went with the loop), so they
        are dropped without an 'unclosed session' warning."""
        for loop, sess in list(self._sessions.items()):
            if loop.is_closed() and not sess.closed:
                connector = sess.connector
                with contextlib.suppress(Exception):
                    connector._close()  # no await possible: the loop is gone
                del self._sessions[loop]

    def _close_at_exit(self) -> None:
        """Close every session still open when the process exits (the process-wide LLM loop's:
        its thread still runs then), quietly."""
        for loop, sess in list(self._sessions.items()):
            if sess.closed:
                continue
            if loop.is_running() and not loop.is_closed():
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(sess.close(), loop).result(timeout=2.0)
            if not sess.closed:
                with contextlib.suppress(Exception):
                    sess.connector._close()

    async def aclose(self) -> None:
        """Close the running loop's session (the next call makes a new one)."""
        sess = self._sessions.pop(asyncio.get_running_loop(), None)
        if sess is not None:
            await sess.close()

    async def chat(
        self,
        api_base: str,
        body: Mapping[str, Any],
        *,
        api_key: str | None,
        timeout_s: float,
    ) -> dict[str, Any]:
        """POST ``body`` to ``{api_base}/chat/completions``; the parsed JSON answer."""
        import aiohttp

        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        url = api_base.rstrip("/") + "/chat/completions"
        try:
            async with self.session().post(
                url,
                data=json.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except aiohttp.ClientConnectionError as exc:  # refused, reset, cut off mid-body
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if status >= 400:
            text = raw.decode("utf-8", errors="replace")
            kind = http_error_kind(status, text)
            raise HTTPStatusError(status, _error_message(text), kind=kind, headers=resp_headers)
        return json.loads(raw)


def _error_message(text: str) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body's start."""
    try:
        err = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return text[:500]
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    return text[:500]
