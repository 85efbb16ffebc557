"""The one LLM client interface: ``generate(spec, messages, params, key=...) -> Generation``.

Every model call of the package (decoding and rewriting, real providers and the simulated pool)
goes through ``LLMClient.generate``, which calls ``litellm.acompletion`` with:

* an explicit ``timeout`` and litellm's own retries switched off (``num_retries=0``,
  ``max_retries=0``): retries are ours, so every attempt passes our rate limiter and is counted;
* exponential backoff with jitter on transient failures only: 429, 5xx, timeouts, connection
  errors and malformed response bodies. Other 4xx (bad request, auth, not found, context window,
  content filter) fail at once, since repeating the same request cannot fix them. A malformed
  body (undecodable JSON, no choices) is treated as transient because it is almost always a
  transport or gateway hiccup (a body cut off mid-stream, a proxy error page sent with 200) that
  the identical request does not repeat; it spends the same ``max_retries`` budget, so a provider
  that is systematically broken costs at most ``max_retries + 1`` requests per call before the
  call is recorded as failed with kind ``malformed``;
* a per-model concurrency limit (``spec.max_concurrency``) and per-model rpm/tpm token buckets;
* the cost from the spec's prices per 1M tokens, else litellm's local cost map, else 0 with a
  one-time warning per model;
* the API key read from the environment variable named by ``spec.api_key_env``, passed to
  litellm as ``api_key`` and scrubbed from every error message we produce.

A final failure raises ``LLMCallError``; ``str(err)`` is the short error string the store records.

Limits are process-wide (threading primitives polled from asyncio), not per event loop: Prefect
may run several shard tasks of one model concurrently in worker threads, each with its own loop,
and a provider's limit applies to all of them together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dars.config import Experiment, ModelSpec

log = logging.getLogger(__name__)

SIM_PROVIDER = "dars-sim"

# Classes of failure. The transient ones are retried; the rest fail at once.
TRANSIENT_KINDS = frozenset({"rate_limit", "server_error", "timeout", "connection", "malformed"})

# Keys litellm must not take from ModelSpec.extra_params: they are set by this module.
_PROTECTED_KWARGS = frozenset(
    {
        "model",
        "messages",
        "api_key",
        "api_base",
        "timeout",
        "num_retries",
        "max_retries",
        "metadata",
    }
)


@dataclass(frozen=True)
class CallKey:
    """Identity of one model call; the observation key of the store.

    ``rewrite_id`` -1 is the original question. Real providers never see the key (it is not sent
    over the wire); the simulated pool uses it to look up the item and to seed its randomness, so
    the same key always gives the same simulated response. ``n_rewrites`` is set only on rewrite
    requests: how many rewrites the prompt asks for.
    """

    dataset: str
    split: str
    query_id: str
    model: str
    rewrite_id: int = -1
    decode_id: int = 0
    n_rewrites: int | None = None


@dataclass(frozen=True)
class GenParams:
    """Decoding and transport parameters of a call (timeout and retry budget included)."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    timeout_s: float = 120.0
    max_retries: int = 4

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"GenParams.max_tokens must be >= 1, got {self.max_tokens}")
        if self.timeout_s <= 0:
            raise ValueError(f"GenParams.timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"GenParams.max_retries must be >= 0, got {self.max_retries}")

    @classmethod
    def for_benchmark(
        cls, exp: Experiment, benchmark: str, *, temperature: float | None = None
    ) -> GenParams:
        """Decode parameters of ``benchmark`` under experiment ``exp`` (protocol + transport)."""
        return cls(
            max_tokens=exp.protocol.max_tokens_for(benchmark),
            temperature=exp.protocol.temperature if temperature is None else temperature,
            top_p=exp.protocol.top_p,
            timeout_s=exp.request_timeout_s,
            max_retries=exp.max_retries,
        )


@dataclass(frozen=True)
class Generation:
    """A successful call: the text, token usage, cost in USD, the latency of the successful
    request in seconds (excluding backoff and rate-limit waits) and how many attempts it took."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    attempts: int
    finish_reason: str | None = None


class LLMCallError(Exception):
    """A call failed for good. ``kind`` is one of the failure classes (``rate_limit``,
    ``server_error``, ``timeout``, ``connection``, ``malformed``, ``bad_request``, ``auth``,
    ``permission``, ``not_found``, ``context_window``, ``content_filter``, ``missing_key``,
    ``unknown``); ``detail`` has been scrubbed of API keys. ``str(err)`` is the short string to
    store."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        model: str,
        status_code: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.model = model
        self.status_code = status_code
        self.attempts = attempts
        super().__init__(self.error)

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS

    @property
    def error(self) -> str:
        code = f" {self.status_code}" if self.status_code else ""
        tries = f"{self.attempts} attempt" + ("s" if self.attempts != 1 else "")
        return f"{self.kind}{code} after {tries} ({self.model}): {self.detail}"[:300]


# --------------------------------------------------------------------------------------------
# litellm import and secret scrubbing


_LITELLM: Any = None
_LITELLM_LOCK = threading.Lock()
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()

_KEY_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[^\s'\",)]+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s'\",)]+"),
]


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


class _ScrubFilter(logging.Filter):
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


def _remember_secret(value: str) -> None:
    with _SECRETS_LOCK:
        _SECRETS.add(value)


def get_litellm() -> Any:
    """Import litellm once, offline-safe: the local cost map, no debug chatter, our log filter
    on its loggers, and the simulated pool registered as the ``dars-sim`` provider."""
    global _LITELLM
    if _LITELLM is not None:
        return _LITELLM
    with _LITELLM_LOCK:
        if _LITELLM is None:
            # Must be set before the import: litellm fetches the remote cost map at import time.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                logging.getLogger(name).addFilter(_ScrubFilter())
            from dars.llm.sim import make_sim_provider

            if not any(p.get("provider") == SIM_PROVIDER for p in litellm.custom_provider_map):
                litellm.custom_provider_map = [
                    *litellm.custom_provider_map,
                    {"provider": SIM_PROVIDER, "custom_handler": make_sim_provider()},
                ]
            _LITELLM = litellm
    return _LITELLM


# --------------------------------------------------------------------------------------------
# rate and concurrency limits


class TokenBucket:
    """Thread-safe token bucket by reservation.

    It refills at ``rate`` units per second up to ``capacity``. ``reserve(n)`` takes ``n`` units
    now (the level may go negative, i.e. into debt) and returns how long the caller must wait
    before using them, so callers are served in arrival order and the long-run throughput never
    exceeds ``rate``. A request larger than the capacity waits for a full bucket and then borrows.
    """

    def __init__(
        self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"TokenBucket needs rate > 0 and capacity > 0, got {rate}, {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._t = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._t) * self.rate)
        self._t = now

    def reserve(self, amount: float) -> float:
        with self._lock:
            self._refill()
            need = min(amount, self.capacity)
            wait = max(0.0, (need - self._level) / self.rate)
            self._level -= amount
            return wait

    def refund(self, amount: float) -> None:
        """Give back units reserved but not used (e.g. max_tokens that were not generated)."""
        if amount <= 0:
            return
        with self._lock:
            self._refill()
            self._level = min(self.capacity, self._level + amount)


class ModelLimits:
    """Concurrency slots and rpm/tpm buckets of one model (shared by all threads and loops).

    Buckets hold one second of traffic (rpm/60 requests, tpm/60 tokens), so requests are paced
    evenly instead of bursting a minute's budget and then stalling: providers often enforce their
    per-minute limits over shorter windows.
    """

    def __init__(self, max_concurrency: int, rpm: int | None, tpm: int | None) -> None:
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.rpm_bucket = TokenBucket(rpm / 60, max(1.0, rpm / 60)) if rpm else None
        self.tpm_bucket = TokenBucket(tpm / 60, max(1.0, tpm / 60)) if tpm else None

    def signature(self) -> tuple[int, float | None, float | None]:
        return (
            self.max_concurrency,
            self.rpm_bucket.rate if self.rpm_bucket else None,
            self.tpm_bucket.rate if self.tpm_bucket else None,
        )

    async def wait_for_rate(self, est_tokens: int) -> None:
        wait = 0.0
        if self.rpm_bucket is not None:
            wait = max(wait, self.rpm_bucket.reserve(1))
        if self.tpm_bucket is not None:
            wait = max(wait, self.tpm_bucket.reserve(est_tokens))
        if wait > 0:
            await asyncio.sleep(wait)

    async def acquire_slot(self) -> None:
        # Polling keeps the semaphore usable from any thread's event loop; the poll interval
        # grows to 20 ms so hundreds of waiters cost little CPU.
        delay = 0.001
        while not self._slots.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def release_slot(self) -> None:
        self._slots.release()


# --------------------------------------------------------------------------------------------
# helpers


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Rough prompt size for the tpm budget: 4 characters per token plus 4 per message."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return math.ceil(chars / 4) + 4 * len(messages)


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

    litellm = get_litellm()
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    chain = _exception_chain(exc)
    if isinstance(exc, litellm.Timeout | TimeoutError):
        return "timeout", None
    if isinstance(exc, litellm.RateLimitError) or status == 429:
        return "rate_limit", 429
    if isinstance(exc, litellm.ContextWindowExceededError):
        return "context_window", status
    if isinstance(exc, litellm.ContentPolicyViolationError):
        return "content_filter", status
    if isinstance(exc, litellm.AuthenticationError):
        return "auth", status
    if isinstance(exc, litellm.PermissionDeniedError):
        return "permission", status
    if isinstance(exc, litellm.NotFoundError):
        return "not_found", status
    if isinstance(exc, litellm.BadRequestError | litellm.UnprocessableEntityError):
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


def _retry_after_s(exc: BaseException) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP-date Retry-After: fall back to our own backoff


# --------------------------------------------------------------------------------------------
# the client


class LLMClient:
    """Calls models through litellm with our retries, limits and cost accounting.

    ``backoff_base_s`` and ``backoff_max_s`` shape the retry delays: attempt k (1-based) waits a
    uniform random time in [d/2, d] with d = min(backoff_max_s, backoff_base_s · 2^(k-1)), or at
    least the server's Retry-After (capped at backoff_max_s).
    """

    def __init__(self, *, backoff_base_s: float = 1.0, backoff_max_s: float = 30.0) -> None:
        if backoff_base_s < 0 or backoff_max_s < 0:
            raise ValueError("backoff times must be >= 0")
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._limits: dict[str, ModelLimits] = {}
        self._limits_lock = threading.Lock()
        self._rng = random.Random()

    def limits_for(self, spec: ModelSpec) -> ModelLimits:
        """The (process-wide for this client) limits of ``spec``; rebuilt if its limits change."""
        with self._limits_lock:
            lim = self._limits.get(spec.name)
            want = (
                spec.max_concurrency,
                spec.rpm / 60 if spec.rpm else None,
                spec.tpm / 60 if spec.tpm else None,
            )
            if lim is None or lim.signature() != want:
                lim = ModelLimits(spec.max_concurrency, spec.rpm, spec.tpm)
                self._limits[spec.name] = lim
            return lim

    def backoff_s(self, attempt: int, retry_after: float | None = None) -> float:
        d = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        delay = self._rng.uniform(d / 2, d)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    def _request_kwargs(
        self,
        spec: ModelSpec,
        messages: Sequence[dict[str, Any]],
        params: GenParams,
        key: CallKey | None,
        api_key: str | None,
    ) -> dict[str, Any]:
        clash = _PROTECTED_KWARGS & set(spec.extra_params)
        if clash:
            raise ValueError(
                f"model {spec.name!r}: extra_params may not set {sorted(clash)}; "
                "use the ModelSpec fields (api_base, api_key_env) and GenParams instead"
            )
        kwargs: dict[str, Any] = {
            "model": spec.litellm_model,
            "messages": list(messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "timeout": params.timeout_s,
            "num_retries": 0,
            "max_retries": 0,
            **spec.extra_params,
        }
        if spec.api_base:
            kwargs["api_base"] = spec.api_base
        if api_key:
            kwargs["api_key"] = api_key
        if spec.litellm_model.startswith(SIM_PROVIDER + "/"):
            # Only the in-process simulator sees the key; real providers never get it.
            kwargs["metadata"] = {"dars_call_key": asdict(key) if key is not None else None}
        return kwargs

    def _cost(self, spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float:
        if spec.input_price_per_m is not None or spec.output_price_per_m is not None:
            return (
                prompt_tokens * (spec.input_price_per_m or 0.0)
                + completion_tokens * (spec.output_price_per_m or 0.0)
            ) / 1e6
        litellm = get_litellm()
        try:
            in_cost, out_cost = litellm.cost_per_token(
                model=spec.litellm_model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
            return float(in_cost) + float(out_cost)
        except Exception:  # litellm raises several types for unmapped models
            _warn_no_price(spec)
            return 0.0

    async def generate(
        self,
        spec: ModelSpec,
        messages: Sequence[dict[str, Any]],
        params: GenParams,
        *,
        key: CallKey | None = None,
    ) -> Generation:
        """Call ``spec`` on ``messages``; retry transient failures; raise ``LLMCallError``."""
        litellm = get_litellm()
        api_key: str | None = None
        if spec.api_key_env:
            api_key = os.environ.get(spec.api_key_env)
            if not api_key:
                raise LLMCallError(
                    "missing_key",
                    f"environment variable {spec.api_key_env} is not set",
                    model=spec.name,
                    attempts=0,
                )
            _remember_secret(api_key)
        secrets = [api_key] if api_key else []
        kwargs = self._request_kwargs(spec, messages, params, key, api_key)
        limits = self.limits_for(spec)
        est_tokens = estimate_tokens(messages) + params.max_tokens
        # Guards against a provider path that ignores ``timeout`` (it should never fire first).
        hard_timeout = params.timeout_s * 1.5 + 5.0

        attempt = 0
        while True:
            attempt += 1
            await limits.wait_for_rate(est_tokens)
            await limits.acquire_slot()
            t0 = time.perf_counter()
            response: Any = None
            failure: BaseException | None = None
            try:
                response = await asyncio.wait_for(
                    litellm.acompletion(**kwargs), timeout=hard_timeout
                )
            except Exception as exc:  # classified below; CancelledError still propagates
                failure = exc
            finally:
                latency = time.perf_counter() - t0
                limits.release_slot()

            if failure is None:
                parsed = _parse_response(response)
                if parsed is not None:
                    text, pt, ct, finish = parsed
                    if pt is None:
                        pt = estimate_tokens(messages)
                    if ct is None:
                        ct = math.ceil(len(text) / 4)
                    if limits.tpm_bucket is not None:
                        limits.tpm_bucket.refund(est_tokens - (pt + ct))
                    return Generation(
                        text=text,
                        prompt_tokens=pt,
                        completion_tokens=ct,
                        cost_usd=self._cost(spec, pt, ct),
                        latency_s=latency,
                        attempts=attempt,
                        finish_reason=finish,
                    )
                kind, status, detail = "malformed", None, "response has no choices/message"
                retry_after = None
            else:
                kind, status = classify_exception(failure)
                detail = scrub(f"{type(failure).__name__}: {failure}", secrets)
                retry_after = _retry_after_s(failure)

            if kind not in TRANSIENT_KINDS or attempt > params.max_retries:
                # ``from None``: the original exception text may contain the key.
                raise LLMCallError(
                    kind, detail, model=spec.name, status_code=status, attempts=attempt
                ) from None
            delay = self.backoff_s(attempt, retry_after)
            log.debug(
                "model %s attempt %d failed (%s); retrying in %.2fs",
                spec.name,
                attempt,
                kind,
                delay,
            )
            await asyncio.sleep(delay)


def _parse_response(response: Any) -> tuple[str, int | None, int | None, str | None] | None:
    """(text, prompt_tokens, completion_tokens, finish_reason) of a chat response, or None when
    the body has no usable choice (counted as a malformed, transient failure)."""
    choices = getattr(response, "choices", None)
    if not choices:
        return None
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None:
        return None
    # ``None`` content is a legitimate (empty) answer, e.g. a reasoning model that spent its
    # whole budget thinking; it is scored, not retried.
    text = message.content if isinstance(message.content, str) else ""
    usage = getattr(response, "usage", None)
    pt = getattr(usage, "prompt_tokens", None) if usage is not None else None
    ct = getattr(usage, "completion_tokens", None) if usage is not None else None
    # Some gateways return usage of 0/0 for a non-empty exchange; treat it as missing.
    if not pt and not ct:
        pt = ct = None
    return text, pt, ct, getattr(choice, "finish_reason", None)


_WARNED_NO_PRICE: set[str] = set()


def _warn_no_price(spec: ModelSpec) -> None:
    if spec.name in _WARNED_NO_PRICE:
        return
    _WARNED_NO_PRICE.add(spec.name)
    msg = (
        f"model {spec.name!r} ({spec.litellm_model}): no input/output_price_per_m in the config "
        "and not in litellm's cost map; its cost is recorded as 0"
    )
    log.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# module-level convenience

_DEFAULT_CLIENT: LLMClient | None = None


def default_client() -> LLMClient:
    """The process-wide client shared by ``generate`` (so all callers share model limits)."""
    global _DEFAULT_CLIENT
    if _DEFAULT_CLIENT is None:
        _DEFAULT_CLIENT = LLMClient()
    return _DEFAULT_CLIENT


async def generate(
    spec: ModelSpec,
    messages: Sequence[dict[str, Any]],
    params: GenParams,
    *,
    key: CallKey | None = None,
) -> Generation:
    """``default_client().generate(...)``: the call every stage uses."""
    return await default_client().generate(spec, messages, params, key=key)
