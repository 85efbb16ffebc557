"""Failures of model calls: their classes, the error we raise, and keeping API keys out of text.

``classify_exception`` maps whatever ``litellm.acompletion`` raised to a failure class; the
transient classes (``TRANSIENT_KINDS``: 429, 5xx, timeouts, connection errors, malformed bodies)
are retried by the client, the rest fail at once. A final failure is an ``LLMCallError`` whose
``str`` is the short error string the store records; ``EmptyCompletionError`` is the one for
calls whose every answer was empty or whitespace-only.

Every key the client reads is remembered (``remember_secret``; ``dars.llm.keys.remember_keys``
reads and remembers the keys of a whole pool up front) and ``scrub`` removes it, and anything
key-shaped, from error text; ``ScrubFilter`` does the same to litellm's own log records, which
include provider error bodies. Completions get ``scrub_known``: the remembered key values only,
since a key-shaped pattern would also rewrite legitimate answers (a code sample with
``api_key=...``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

# Classes of failure. The transient ones are retried; the rest fail at once. An empty answer
# ("empty") is a provider fault, not an answer; one cut at max_tokens before any visible text
# ("empty_truncated", e.g. a reasoning model that spent its budget thinking) is not transient:
# the same request with the same budget ends the same way.
TRANSIENT_KINDS = frozenset(
    {"rate_limit", "server_error", "timeout", "connection", "malformed", "empty"}
)
EMPTY_KINDS = frozenset({"empty", "empty_truncated"})


class LLMCallError(Exception):
    """A call failed for good. ``kind`` is one of the failure classes (``rate_limit``,
    ``server_error``, ``timeout``, ``connection``, ``malformed``, ``empty``,
    ``empty_truncated``, ``bad_request``, ``auth``, ``permission``, ``not_found``,
    ``context_window``, ``content_filter``, ``missing_key``, ``unknown``); ``detail`` has been
    scrubbed of API keys. ``str(err)`` is the short string to store. ``billed_usd`` is what the
    provider billed for the attempts it answered (empty completions come with usage); 0 for
    failures without a usable body. ``elapsed_s``: the time the call took, every attempt and
    backoff included (the ``latency_s`` of its error row)."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        model: str,
        status_code: int | None = None,
        attempts: int = 1,
        billed_usd: float = 0.0,
        elapsed_s: float = 0.0,
    ) -> None:
        self.kind = kind
        self.elapsed_s = elapsed_s
        self.detail = detail
        self.model = model
        self.status_code = status_code
        self.attempts = attempts
        self.billed_usd = billed_usd
        super().__init__(self.error)

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS

    @property
    def error(self) -> str:
        code = f" {self.status_code}" if self.status_code else ""
        tries = f"{self.attempts} attempt" + ("s" if self.attempts != 1 else "")
        return f"{self.kind}{code} after {tries} ({self.model}): {self.detail}"[:300]


class HTTPStatusError(Exception):
    """An OpenAI-compatible endpoint answered the HTTP transport (``transport: http``) with an
    error status. ``kind`` is its failure class, decided where the body is read
    (:func:`http_error_kind`); ``headers`` are the response's (Retry-After)."""

    def __init__(self, status_code: int, message: str, *, kind: str, headers: Any = None) -> None:
        self.status_code = status_code
        self.message = message
        self.kind = kind
        self.headers = headers
        super().__init__(f"{status_code}: {message}")


def _content_policy_violation(text: str) -> bool:
    """litellm's test for a content-policy refusal of an OpenAI-compatible route (1.110:
    ``exception_mapping_utils``, the ``openai`` branch)."""
    return (
        ("invalid_request_error" in text and "content_policy_violation" in text)
        or ("Invalid prompt" in text and "violating our usage policy" in text)
        or "request was rejected as a result of the safety system" in text.lower()
    )


def http_error_kind(status: int, message: str) -> str:
    """The failure class of an error answer of an OpenAI-compatible endpoint, as
    :func:`classify_exception` classifies litellm's exception for the same answer: litellm's own
    message checks first (context window, content policy), then the status."""
    from litellm.litellm_core_utils.exception_mapping_utils import ExceptionCheckers

    if status == 429:
        return "rate_limit"
    if status == 400 and ExceptionCheckers.is_error_str_context_window_exceeded(message):
        return "context_window"
    if status == 400 and _content_policy_violation(message):
        return "content_filter"
    by_status = {401: "auth", 403: "permission", 404: "not_found", 408: "timeout"}
    if status in by_status:
        return by_status[status]
    if status == 413:
        return "context_window"
    if status >= 500:
        return "server_error"
    return "bad_request" if status >= 400 else "unknown"


class EmptyCompletionError(LLMCallError):
    """Every attempt of a call was answered with an empty or whitespace-only completion (kind
    ``empty``, retried like a 5xx), or with one cut at ``max_tokens`` before any visible text
    (kind ``empty_truncated``, not retried). The collect stage stores it as ``status=error``, so
    ``dars rerun --failed`` asks again; ``empty_completion: accept`` in the experiment config
    stores empty answers as ok instead."""


# --------------------------------------------------------------------------------------------
# secret scrubbing

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()

_KEY_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[^\s'\",)]+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s'\",)]+"),
]


# Remembered values shorter than this are not scrubbed from completions: no provider issues such
# keys, and replacing a short common string (a placeholder such as "test") in every answer would
# silently change what is scored. Error text is scrubbed of every remembered value.
MIN_SCRUBBED_IN_COMPLETIONS = 8


def remember_secret(value: str) -> None:
    """Scrub ``value`` from every text this process scrubs from now on (an API key just read)."""
    with _SECRETS_LOCK:
        _SECRETS.add(value)


def scrub_known(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the given secrets and every key remembered by this process (those of at
    least :data:`MIN_SCRUBBED_IN_COMPLETIONS` characters) replaced by ``[REDACTED]``; nothing
    else changes. For completions, whose content is data (see the module docstring)."""
    with _SECRETS_LOCK:
        known = set(_SECRETS)
    for s in sorted({*secrets, *known}, key=len, reverse=True):
        if len(s) >= MIN_SCRUBBED_IN_COMPLETIONS:
            text = text.replace(s, "[REDACTED]")
    return text


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the given secrets, every key ever read by this process, and key-looking
    tokens (``Bearer …``, ``sk-…``, ``api_key=…``) replaced by ``[REDACTED]``."""
    with _SECRETS_LOCK:
        known = set(_SECRETS)
    for s in sorted({*secrets, *known}, key=len, reverse=True):
        if s:
            text = text.replace(s, "[REDACTED]")
    text = _KEY_PATTERNS[0].sub(r"\1[REDACTED]", text)
    text = _KEY_PATTERNS[1].sub("[REDACTED]", text)
    return _KEY_PATTERNS[2].sub(r"\1[REDACTED]", text)


class ScrubFilter(logging.Filter):
    """Redacts keys from litellm's own log records (it logs provider error bodies)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        clean = scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


# --------------------------------------------------------------------------------------------
# classification


def _exception_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def classify_exception(exc: BaseException) -> tuple[str, int | None]:
    """Map an exception raised by ``litellm.acompletion`` to (kind, HTTP status or None).

    litellm wraps transport failures in ``InternalServerError`` (status 500), so the cause chain
    is inspected first for undecodable bodies and connection errors.
    """
    import openai

    # litellm's exception classes are looked up, never imported here: an exception can only be
    # one of them once litellm is loaded, and importing it from this module would bypass the
    # offline setup ``dars.llm.client.get_litellm`` does before the import.
    litellm = sys.modules.get("litellm")

    def litellm_error(*names: str) -> bool:
        return litellm is not None and isinstance(exc, tuple(getattr(litellm, n) for n in names))

    if isinstance(exc, HTTPStatusError):  # the HTTP transport classified it already
        return exc.kind, exc.status_code
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    chain = _exception_chain(exc)
    if isinstance(exc, TimeoutError) or litellm_error("Timeout"):
        return "timeout", None
    if litellm_error("RateLimitError") or status == 429:
        return "rate_limit", 429
    if litellm_error("ContextWindowExceededError"):
        return "context_window", status
    if litellm_error("ContentPolicyViolationError"):
        return "content_filter", status
    if litellm_error("AuthenticationError"):
        return "auth", status
    if litellm_error("PermissionDeniedError"):
        return "permission", status
    if litellm_error("NotFoundError"):
        return "not_found", status
    if litellm_error("BadRequestError", "UnprocessableEntityError"):
        return "bad_request", status
    if any(isinstance(e, json.JSONDecodeError) for e in chain) or "no 'choices'" in str(exc):
        return "malformed", status
    if any(isinstance(e, openai.APITimeoutError) for e in chain):
        return "timeout", None
    if any(isinstance(e, openai.APIConnectionError | ConnectionError) for e in chain):
        return "connection", None
    if status == 408:
        return "timeout", status
    by_status = {401: "auth", 403: "permission", 404: "not_found", 413: "context_window"}
    if status in by_status:
        return by_status[status], status
    if status is not None and status >= 500:
        return "server_error", status
    if status is not None and 400 <= status < 500:
        return "bad_request", status
    return "unknown", status
