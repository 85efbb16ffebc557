"""The one LLM client interface: ``generate(spec, messages, params, key=...) -> Generation``.

Every model call of the package (decoding and rewriting, real providers and the simulated pool)
goes through ``LLMClient.generate``. How a request reaches the model is the spec's
``transport``; everything else (retries, limits, keys, cost, parsing) is the same code for all:

* ``litellm`` (the route of every real provider under ``auto``): ``litellm.acompletion``, as a
  call whose caller logs and bills it: inside litellm's ``internal_sub_call`` marker (no
  success/failure logging, callbacks or spend bookkeeping) and with litellm's per-call
  ``response_cost_calculator`` skipped (:func:`_skip_litellm_cost`); dars prices the tokens
  itself, from litellm's cost map. litellm caches its provider clients (one ``AsyncOpenAI``
  per key, base and loop), so no HTTP client is built per call;
* ``http``: a direct POST to an OpenAI-compatible ``/chat/completions`` (``openai/`` routes)
  over one aiohttp session per event loop (:mod:`dars.llm.http`), its failures classified as
  litellm classifies the same answers;
* ``auto`` on an in-process provider whose handler has a ``dars_answer(model, messages,
  max_tokens, key) -> (text, prompt_tokens, completion_tokens)`` method (the simulated pool):
  that method, called directly, without litellm (``transport: litellm`` keeps the litellm
  route, which the tests compare it with).

Each request is made with:

* an explicit ``timeout`` and litellm's own retries switched off (``num_retries=0``,
  ``max_retries=0``): retries are ours, so every attempt passes our rate limiter and is counted;
* exponential backoff with jitter on transient failures only (:mod:`dars.llm.errors`): 429, 5xx,
  timeouts, connection errors and malformed response bodies. Other 4xx (bad request, auth, not
  found, context window, content filter) fail at once, since repeating the same request cannot
  fix them. A malformed body (undecodable JSON, no choices) is treated as transient because it
  is almost always a transport or gateway hiccup (a body cut off mid-stream, a proxy error page
  sent with 200) that the identical request does not repeat; it spends the same ``max_retries``
  budget, so a provider that is systematically broken costs at most ``max_retries + 1``
  requests per call before the call is recorded as failed with kind ``malformed``;
* an empty or whitespace-only completion is a transient failure too (kind ``empty``: a provider
  or gateway fault, not an answer), retried within the same budget and then raised as
  ``EmptyCompletionError``, which the collect stage stores as ``status=error``; one cut at
  ``max_tokens`` before any visible text (kind ``empty_truncated``) fails at once, since the
  same budget ends the same way. ``GenParams.empty_completion="accept"`` (the experiment's
  ``empty_completion``) returns empty answers as they are instead. The empty attempts' cost is
  reported (``Generation.empty_cost_usd``, ``LLMCallError.billed_usd``): the provider bills them;
* a per-model concurrency limit (``spec.max_concurrency``) and per-model rpm/tpm token buckets
  (:mod:`dars.llm.limits`);
* the cost from the spec's prices per 1M tokens, else litellm's local cost map, else 0 with a
  one-time warning per model;
* the API key from the environment variable ``spec.api_key_env`` or the Prefect ``Secret``
  block ``spec.api_key_secret`` (:mod:`dars.llm.keys`), passed to litellm as ``api_key`` and
  scrubbed from every error message we produce and from the completion text returned (every
  key remembered by the process, see :func:`dars.llm.keys.remember_keys`, is scrubbed from
  both); a model with an ``api_base`` and neither (a local server: llama.cpp, vLLM, Ollama)
  gets the placeholder :data:`KEYLESS_API_KEY`, never a key litellm would find in the
  environment.

A final failure raises ``LLMCallError``; ``str(err)`` is the short error string the store records.

In-process providers (the simulated pool ``dars-sim``, or one of your own) are litellm
``CustomLLM`` handlers found through :data:`PROVIDERS`, i.e. the entry-point group
``dars.llm_providers``: the entry name is the litellm route prefix (``dars-sim`` serves
``dars-sim/<model>``), the value a zero-argument factory returning the handler. ``get_litellm``
installs every one of them in ``litellm.custom_provider_map`` at the first call. Only calls to
such a provider carry the ``CallKey`` (as litellm metadata, ``{"dars_call_key": {...}}``): the
in-process answerer needs it, a real provider never sees it. This module imports no provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from dars.llm.errors import (
    EMPTY_KINDS,
    TRANSIENT_KINDS,
    EmptyCompletionError,
    HTTPStatusError,
    LLMCallError,
    ScrubFilter,
    classify_exception,
    scrub,
    scrub_known,
)
from dars.llm.http import OPENAI_API_BASE, HttpTransport
from dars.llm.keys import aapi_key
from dars.llm.limits import ModelLimits
from dars.llm.types import CallKey, Generation, GenParams, estimate_tokens
from dars.registry import Registry

if TYPE_CHECKING:
    from dars.config import ModelSpec

log = logging.getLogger(__name__)

#: In-process litellm providers: name = litellm route prefix, entry = a zero-argument factory
#: returning the ``litellm.CustomLLM`` handler. Filled from the entry-point group
#: ``dars.llm_providers`` (``[project.entry-points."dars.llm_providers"] mine =
#: "my_pkg.llm:make_handler"``) or with ``PROVIDERS.register("mine")(make_handler)`` before the
#: first call.
PROVIDERS: Registry[Callable[[], Any]] = Registry(
    "LLM provider", Callable, instances=True, group="dars.llm_providers"
)

#: The key sent to a model with an ``api_base`` and no key source (a keyless local server).
KEYLESS_API_KEY = "no-key"

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


# --------------------------------------------------------------------------------------------
# litellm import and the in-process providers

_LITELLM: Any = None
_LITELLM_LOCK = threading.Lock()


def get_litellm() -> Any:
    """Import litellm once, offline-safe: the local cost map, no debug chatter, our log filter
    on its loggers, and every provider of :data:`PROVIDERS` installed as a custom provider."""
    global _LITELLM
    if _LITELLM is not None:
        return _LITELLM
    with _LITELLM_LOCK:
        if _LITELLM is None:
            # Must be set before the import: litellm fetches the remote cost map at import time.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            # First, so that a broken provider fails every call the same way, before any setup.
            _install_providers(litellm)
            _skip_litellm_cost(litellm)
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
                logging.getLogger(name).addFilter(ScrubFilter())
            _LITELLM = litellm
    return _LITELLM


def _install_providers(litellm: Any) -> None:
    """Add every provider of :data:`PROVIDERS` to ``litellm.custom_provider_map``, except the
    names it holds already (set up by the caller: theirs wins)."""
    installed = {p.get("provider") for p in litellm.custom_provider_map}
    added = []
    for name in PROVIDERS.names():
        if name in installed:
            continue
        try:
            handler = PROVIDERS.get(name)()
        except Exception as exc:  # a broken plug-in: say which one, keep the cause
            raise RuntimeError(
                f"LLM provider {name!r} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(handler, litellm.CustomLLM):
            raise TypeError(
                f"LLM provider {name!r}: its factory must return a litellm.CustomLLM, "
                f"got {type(handler).__name__}"
            )
        added.append({"provider": name, "custom_handler": handler})
    if added:
        litellm.custom_provider_map = [*litellm.custom_provider_map, *added]


# Set while litellm runs a call of ours: litellm's per-call cost calculation is skipped then.
_OUR_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("dars_llm_call", default=False)


def _skip_litellm_cost(litellm: Any) -> None:
    """Make litellm's per-call cost calculation (``Logging.response_cost_calculator``: the cost
    map walk, and a formatted zero-cost diagnostic, on every response) a no-op for the calls
    this module makes; dars prices tokens itself (:meth:`LLMClient._cost`, with litellm's cost
    map). litellm has no switch for it; other callers of litellm in the process are unaffected.
    A litellm without that method is left alone."""
    try:
        from litellm.litellm_core_utils.litellm_logging import Logging
    except ImportError:
        return
    original = getattr(Logging, "response_cost_calculator", None)
    if original is None or getattr(original, "_dars_skips_ours", False):
        return

    def response_cost_calculator(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _OUR_CALL.get():
            return None
        return original(self, *args, **kwargs)

    response_cost_calculator._dars_skips_ours = True  # type: ignore[attr-defined]
    Logging.response_cost_calculator = response_cost_calculator


def _unlogged() -> contextlib.AbstractContextManager[Any]:
    """litellm's marker for a call whose caller logs and bills it (``internal_sub_call``): no
    success/failure logging, no callbacks, no spend bookkeeping for it. A no-op on a litellm
    without it."""
    try:
        from litellm._internal_context import internal_sub_call
    except ImportError:
        return contextlib.nullcontext()
    return internal_sub_call()


async def _litellm_completion(litellm: Any, kwargs: dict[str, Any]) -> Any:
    """``litellm.acompletion(**kwargs)`` as a call of ours (no cost calculation, no logging)."""
    token = _OUR_CALL.set(True)
    try:
        with _unlogged():
            return await litellm.acompletion(**kwargs)
    finally:
        _OUR_CALL.reset(token)


def _direct_handler(litellm: Any, litellm_model: str) -> Any:
    """The in-process provider's handler serving ``litellm_model`` when it offers a direct path
    (a ``dars_answer`` method), else None."""
    for entry in litellm.custom_provider_map:
        name = entry.get("provider")
        if name and litellm_model.startswith(name + "/"):
            handler = entry.get("custom_handler")
            return handler if callable(getattr(handler, "dars_answer", None)) else None
    return None


def _in_process(litellm_model: str) -> bool:
    """True when ``litellm_model`` is routed to one of the in-process providers."""
    return any(litellm_model.startswith(name + "/") for name in PROVIDERS.names())


# --------------------------------------------------------------------------------------------
# helpers


def _retry_after_s(exc: BaseException) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None and isinstance(exc, HTTPStatusError):
        headers = exc.headers
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
        self._http = HttpTransport()

    async def aclose(self) -> None:
        """Close the HTTP session of the running loop (``transport: http``), if any."""
        await self._http.aclose()

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
                "use the ModelSpec fields (api_base, api_key_env, api_key_secret) and GenParams "
                "instead"
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
        elif spec.api_base:
            # A server at an api_base with no key source is a keyless local one (llama.cpp,
            # vLLM, Ollama), which ignores the key. litellm's OpenAI route refuses to call
            # without one, and would otherwise fall back to OPENAI_API_KEY, sending the user's
            # OpenAI key to that server: send a placeholder instead.
            kwargs["api_key"] = KEYLESS_API_KEY
        if _in_process(spec.litellm_model):
            # Only an in-process provider (the simulator) sees the key; real providers never do.
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
        started = time.perf_counter()
        api_key = await aapi_key(spec)  # raises LLMCallError(missing_key) before any request
        secrets = [api_key] if api_key else []
        kwargs = self._request_kwargs(spec, messages, params, key, api_key)
        limits = self.limits_for(spec)
        est_tokens = estimate_tokens(messages) + params.max_tokens
        # Guards against a provider path that ignores ``timeout`` (it should never fire first).
        hard_timeout = params.timeout_s * 1.5 + 5.0
        direct = _direct_handler(litellm, spec.litellm_model) if spec.transport == "auto" else None

        attempt = 0
        empty_cost = 0.0  # billed by the provider for attempts answered with an empty text
        while True:
            attempt += 1
            # Slot first, then the rate: a request paced while the slots were full would
            # otherwise go out with every other one that waited, in a burst, when slots free.
            await limits.acquire_slot()
            try:
                await limits.wait_for_rate(est_tokens)
            except BaseException:
                limits.release_slot()
                raise
            t0 = time.perf_counter()
            parsed: tuple[str, int | None, int | None, str | None] | None = None
            failure: BaseException | None = None
            try:
                if direct is not None:
                    # In process, no I/O: no timeout task needed.
                    parsed = _direct_answer(direct, spec.litellm_model, messages, params, key)
                elif spec.transport == "http":
                    # aiohttp enforces the timeout itself (no guard task needed).
                    body = await self._http.chat(
                        spec.api_base or OPENAI_API_BASE,
                        _http_body(kwargs),
                        api_key=kwargs.get("api_key"),
                        timeout_s=params.timeout_s,
                    )
                    parsed = _parse_body(body)
                else:
                    response = await asyncio.wait_for(
                        _litellm_completion(litellm, kwargs), timeout=hard_timeout
                    )
                    parsed = _parse_response(response)
            except Exception as exc:  # classified below; CancelledError still propagates
                failure = exc
            finally:
                latency = time.perf_counter() - t0
                limits.release_slot()

            if failure is None:
                if parsed is not None:
                    text, pt, ct, finish = parsed
                    if pt is None:
                        pt = estimate_tokens(messages)
                    if ct is None:
                        ct = math.ceil(len(text) / 4)
                    limits.refund_tokens(est_tokens - (pt + ct))
                    cost = self._cost(spec, pt, ct)
                    if text.strip() or params.empty_completion == "accept":
                        return Generation(
                            # A model may repeat a key it saw (in a prompt, a tool output):
                            # what we return is stored, so no key value may survive in it.
                            text=scrub_known(text, secrets),
                            prompt_tokens=pt,
                            completion_tokens=ct,
                            cost_usd=cost,
                            latency_s=latency,
                            attempts=attempt,
                            finish_reason=finish,
                            empty_cost_usd=empty_cost,
                        )
                    empty_cost += cost
                    kind = "empty_truncated" if finish == "length" else "empty"
                    status, retry_after = None, None
                    detail = (
                        f"empty completion (finish_reason {finish!r}, {ct} completion tokens)"
                        + ("; raise max_tokens" if kind == "empty_truncated" else "")
                    )
                else:
                    kind, status, detail = "malformed", None, "response has no choices/message"
                    retry_after = None
            else:
                kind, status = classify_exception(failure)
                detail = scrub(f"{type(failure).__name__}: {failure}", secrets)
                retry_after = _retry_after_s(failure)

            if kind not in TRANSIENT_KINDS or attempt > params.max_retries:
                # ``from None``: the original exception text may contain the key.
                error = EmptyCompletionError if kind in EMPTY_KINDS else LLMCallError
                raise error(
                    kind,
                    detail,
                    model=spec.name,
                    status_code=status,
                    attempts=attempt,
                    billed_usd=empty_cost,
                    elapsed_s=time.perf_counter() - started,
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


def _direct_answer(
    handler: Any,
    litellm_model: str,
    messages: Sequence[dict[str, Any]],
    params: GenParams,
    key: CallKey | None,
) -> tuple[str, int | None, int | None, str | None]:
    """An in-process provider's answer, called directly (``transport: auto``): what litellm
    would have returned from the same handler, without litellm. The handler raises an exception
    with a ``status_code`` for a call it cannot answer."""
    model = litellm_model.split("/", 1)[1]
    text, pt, ct = handler.dars_answer(model, messages, params.max_tokens, key)
    if not pt and not ct:  # as _parse_response reads a usage of 0/0
        return text, None, None, "stop"
    return text, pt, ct, "stop"


def _http_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body the HTTP transport posts: litellm's request kwargs without
    the transport ones, and the model id without its ``openai/`` route prefix."""
    body = {k: v for k, v in kwargs.items() if k not in _PROTECTED_KWARGS}
    body["model"] = kwargs["model"].split("/", 1)[1]
    body["messages"] = kwargs["messages"]
    return body


def _parse_body(body: Any) -> tuple[str, int | None, int | None, str | None] | None:
    """:func:`_parse_response` of a JSON answer (the HTTP transport's)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    usage = body.get("usage") or {}
    pt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    ct = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not pt and not ct:
        pt = ct = None
    return text, pt, ct, choice.get("finish_reason")


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
    # ``None`` content is an empty answer (e.g. a reasoning model that spent its whole budget
    # thinking); the caller decides what an empty answer is (GenParams.empty_completion).
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


_UNIT_PRICES: dict[tuple[str, str, float | None, float | None], tuple[float, float]] = {}


def max_cost_usd(spec: ModelSpec, messages: Sequence[dict[str, Any]], params: GenParams) -> float:
    """Upper bound of one call's cost: the prompt estimate (:func:`estimate_tokens`) at the
    input price plus ``params.max_tokens`` at the output price (prices as the cost of a call:
    the spec's, else litellm's cost map, else 0). The spend cap reserves it before each call;
    it is exceeded only when the provider counts more prompt tokens than the estimate."""
    sig = (spec.name, spec.litellm_model, spec.input_price_per_m, spec.output_price_per_m)
    unit = _UNIT_PRICES.get(sig)
    if unit is None:
        # Per-token prices, looked up once per model (the cost-map lookup is not free).
        client = default_client()
        unit = _UNIT_PRICES[sig] = (
            client._cost(spec, 1_000_000, 0) / 1e6,
            client._cost(spec, 0, 1_000_000) / 1e6,
        )
    return estimate_tokens(messages) * unit[0] + params.max_tokens * unit[1]
