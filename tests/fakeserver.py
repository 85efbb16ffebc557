"""A small OpenAI-compatible chat-completions server for tests, with scripted faults.

It runs a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a background thread and
answers ``POST /v1/chat/completions`` and ``POST /chat/completions`` with an OpenAI-shaped body
including ``usage``. Tests point litellm at it with ``model="openai/<anything>"`` and
``api_base=server.base_url``.

Faults are scripted with rules, checked in the order they were added; the first rule that matches
a request and still has uses left decides what happens to it::

    with FakeOpenAIServer() as srv:
        srv.add_rule(Status(429), times=2)                 # the next 2 requests get a 429
        srv.add_rule(Status(500), match="question 7")      # every request whose prompt has it
        srv.add_rule(Hang(5.0), times=1, match="slow")     # first hit of a prompt hangs
        srv.add_rule(Malformed(), times=1)                 # a 200 whose body is not valid JSON
        srv.add_rule(Reply("  "), times=1)                 # a 200 with a whitespace-only answer
        srv.add_rule(Reply("ok", echo_auth=True))          # a 200 whose answer quotes the key
        ...
        srv.hits["the prompt"]        # how many requests carried that prompt (all outcomes)
        srv.ok_hits["the prompt"]     # how many of them got a normal 200 answer
        srv.max_in_flight             # the largest number of concurrent requests seen

"The prompt" is the content of the last user message of a request. The reply text comes from
``responder(body) -> str`` (default: ``"echo: <prompt>\\nFinal Answer: 42"``); usage counts are
``ceil(chars / 4)`` of the prompt messages and of the reply, so tests can predict costs.
``FakeOpenAIServer(echo_auth_header=True)`` also sends the request's key back in a response
header on every reply (``X-Echo-Api-Key``), the way some debugging proxies do.

``FakeOpenAIServer(rate_limit=(limit, window_s))`` enforces a provider's rate limit over a
sliding window: a request arriving when ``limit`` requests were admitted in the last
``window_s`` seconds gets a 429 with ``Retry-After`` (seconds until the oldest of them leaves the
window) and is not counted; scripted rules apply to admitted requests only.
``srv.admitted_at`` (monotonic arrival times of admitted requests) and ``srv.rate_limited``
(429s sent) say how a client kept the limit.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Delay",
    "Disconnect",
    "FakeOpenAIServer",
    "Hang",
    "Malformed",
    "Reply",
    "Rule",
    "Status",
    "completion_json",
    "count_tokens",
    "default_responder",
    "last_user_prompt",
]


@dataclass(frozen=True)
class Status:
    """Answer with HTTP ``code`` and an OpenAI-style error body.

    ``echo_auth`` puts the request's Authorization header into the error message, the way some
    misbehaving gateways do, so tests can check that callers scrub keys from errors.
    ``echo_key`` puts the bare key (the Authorization header without ``Bearer``) in the message,
    which no key-shaped pattern catches. ``retry_after`` sets a Retry-After header (seconds).
    """

    code: int
    message: str = "injected error"
    echo_auth: bool = False
    echo_key: bool = False
    retry_after: float | None = None


@dataclass(frozen=True)
class Hang:
    """Sleep ``seconds`` before answering normally (long enough to trip the client's timeout)."""

    seconds: float = 30.0


@dataclass(frozen=True)
class Delay:
    """Answer normally after ``seconds`` (latency injection)."""

    seconds: float


@dataclass(frozen=True)
class Malformed:
    """A 200 response whose body is ``body`` (default: truncated JSON)."""

    body: bytes = b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "tru'


@dataclass(frozen=True)
class Reply:
    """A normal 200 answer whose message content is ``content`` (``None`` sends JSON null), e.g.
    an empty or whitespace-only completion, with ``finish_reason``. ``echo_auth`` appends the
    request's bare key to the content, like a model repeating a key it was shown."""

    content: str | None
    finish_reason: str = "stop"
    echo_auth: bool = False


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without sending any response."""


Fault = Status | Hang | Delay | Malformed | Reply | Disconnect


@dataclass
class Rule:
    """Apply ``fault`` to requests matching ``match`` (``times`` uses; None = unlimited).

    ``match`` is None (every request), a substring of the prompt, or a predicate on the parsed
    request body.
    """

    fault: Fault
    times: int | None = 1
    match: str | Callable[[dict[str, Any]], bool] | None = None
    used: int = field(default=0)

    def applies(self, body: dict[str, Any], prompt: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match in prompt
        return bool(self.match(body))


def last_user_prompt(body: dict[str, Any]) -> str:
    """Content of the last ``user`` message of a chat request ('' when there is none)."""
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, list):  # content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def count_tokens(text: str) -> int:
    """The fake tokenizer: one token per 4 characters, rounded up."""
    return math.ceil(len(text) / 4)


def default_responder(body: dict[str, Any]) -> str:
    return f"echo: {last_user_prompt(body)}\nFinal Answer: 42"


def bare_key(headers: dict[str, str]) -> str:
    """The key a request carried: its Authorization header without ``Bearer``, or x-api-key."""
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer ").strip() or headers.get("x-api-key", "")


class FakeOpenAIServer:
    """OpenAI-compatible fake server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        responder: Callable[[dict[str, Any]], str] | None = None,
        latency_s: float = 0.0,
        echo_auth_header: bool = False,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.responder = responder or default_responder
        self.rate_limit = rate_limit
        self.admitted_at: list[float] = []
        self.rate_limited = 0
        self.latency_s = latency_s
        self.echo_auth_header = echo_auth_header
        self.rules: list[Rule] = []
        self.hits: Counter[str] = Counter()
        self.ok_hits: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []  # parsed bodies, arrival order
        self.headers: list[dict[str, str]] = []  # request headers, arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in Hang/Delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: pass as ``api_base`` to litellm."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ---------------------------------------------------------------------------
    def add_rule(
        self,
        fault: Fault,
        *,
        times: int | None = 1,
        match: str | Callable[[dict[str, Any]], bool] | None = None,
    ) -> Rule:
        """Script ``fault`` for the next ``times`` requests matching ``match`` (see ``Rule``)."""
        rule = Rule(fault=fault, times=times, match=match)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self.rules.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.hits.clear()
            self.ok_hits.clear()
            self.requests.clear()
            self.headers.clear()
            self.max_in_flight = self.in_flight

    @property
    def total_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- internals ---------------------------------------------------------------------------
    def _admit(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[str, Fault | None]:
        prompt = last_user_prompt(body)
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.hits[prompt] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.rate_limit is not None:
                refused = self._over_limit(*self.rate_limit)
                if refused is not None:
                    return prompt, refused
            for rule in self.rules:
                if rule.applies(body, prompt):
                    rule.used += 1
                    return prompt, rule.fault
        return prompt, None

    def _over_limit(self, limit: int, window_s: float) -> Status | None:
        """Admit a request (None) or refuse it with a 429 (under ``self._lock``)."""
        now = time.monotonic()
        recent = self.admitted_at[bisect.bisect_right(self.admitted_at, now - window_s) :]
        if len(recent) < limit:
            self.admitted_at.append(now)
            return None
        self.rate_limited += 1
        wait = round(recent[0] + window_s - now, 3)
        return Status(429, f"rate limit: {limit} requests per {window_s:g} s", retry_after=wait)

    def _leave(self, prompt: str, *, ok: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            if ok:
                self.ok_hits[prompt] += 1

    def _completion_body(self, body: dict[str, Any]) -> bytes:
        return self._encode(body, self.responder(body), "stop")

    def _encode(self, body: dict[str, Any], text: str | None, finish_reason: str) -> bytes:
        """An OpenAI chat-completion body answering ``body`` with ``text`` (None: JSON null)."""
        return completion_json(body, text, finish_reason, n=len(self.requests))


def completion_json(body: dict[str, Any], text: str | None, finish_reason: str, *, n: int) -> bytes:
    """An OpenAI chat-completion body (the ``n``-th) answering the request ``body`` with
    ``text`` (None: JSON null); usage by :func:`count_tokens` of the prompt and of ``text``."""
    prompt_chars = "".join(str(m.get("content") or "") for m in body.get("messages") or [])
    pt, ct = count_tokens(prompt_chars), count_tokens(text or "")
    return json.dumps(
        {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }
    ).encode()


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real providers do

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output clean

        _request_headers: dict[str, str] = {}

        def _send(self, code: int, payload: bytes, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if server.echo_auth_header:
                self.send_header("X-Echo-Api-Key", bare_key(self._request_headers))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._send(
                    404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode()
                )
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(400, b'{"error": {"message": "request body is not JSON"}}')
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._request_headers = headers
            prompt, fault = server._admit(body, headers)
            # Counters are updated before the response is written, so a client that has read
            # its answer always sees them up to date.
            try:
                if server.latency_s:
                    server._stopping.wait(server.latency_s)
                if isinstance(fault, Hang | Delay):
                    server._stopping.wait(fault.seconds)
                if isinstance(fault, Disconnect):
                    server._leave(prompt, ok=False)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if isinstance(fault, Status):
                    msg = fault.message
                    if fault.echo_auth:
                        msg += f" (received Authorization: {headers.get('authorization', '')})"
                    if fault.echo_key:
                        msg += f" (key {bare_key(headers)} is not allowed here)"
                    err = {"error": {"message": msg, "type": "injected", "code": fault.code}}
                    extra = {}
                    if fault.retry_after is not None:
                        extra["Retry-After"] = str(fault.retry_after)
                    server._leave(prompt, ok=False)
                    self._send(fault.code, json.dumps(err).encode(), extra)
                    return
                if isinstance(fault, Malformed):
                    server._leave(prompt, ok=False)
                    self._send(200, fault.body)
                    return
                if isinstance(fault, Reply):
                    text = fault.content
                    if fault.echo_auth:
                        text = f"{text or ''} My key is {bare_key(headers)}."
                    server._leave(prompt, ok=True)
                    self._send(200, server._encode(body, text, fault.finish_reason))
                    return
                payload = server._completion_body(body)
                # A hung request's client has usually given up, so it does not count as served.
                server._leave(prompt, ok=not isinstance(fault, Hang))
                self._send(200, payload)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the client went away (timeout) while we were answering

    return Handler
