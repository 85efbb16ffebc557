"""The litellm client (``dars.llm.client``) against the fake OpenAI-compatible server: retries,
limits, cost, keys; and the in-process providers it installs in litellm."""

from __future__ import annotations

import asyncio
import functools
import logging
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

import dars.llm.client as client_module
from dars.config import ModelSpec
from dars.llm import (
    CallKey,
    EmptyCompletionError,
    GenParams,
    LLMCallError,
    LLMClient,
    remember_keys,
)
from dars.llm.types import estimate_tokens
from dars.registry import Registry
from tests.fakeserver import (
    Delay,
    Disconnect,
    FakeOpenAIServer,
    Hang,
    Malformed,
    Reply,
    Status,
    count_tokens,
)

FAKE_KEY = "sk-dars-test-0123456789abcdefSECRET"
KEY_ENV = "DARS_TEST_FAKE_API_KEY"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 6 times 7?"},
]
PARAMS = GenParams(max_tokens=64, temperature=0.7, top_p=0.95, timeout_s=5.0, max_retries=3)


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    return FAKE_KEY


def fake_spec(server: FakeOpenAIServer, **over: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "name": "fake",
        "litellm_model": "openai/anything",
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "input_price_per_m": 1.0,
        "output_price_per_m": 2.0,
    }
    fields.update(over)
    return ModelSpec(**fields)


def fast_client() -> LLMClient:
    return LLMClient(backoff_base_s=0.01, backoff_max_s=0.05)


def call(spec: ModelSpec, params: GenParams = PARAMS, client: LLMClient | None = None, **kw: Any):
    return asyncio.run((client or fast_client()).generate(spec, MESSAGES, params, **kw))


def test_success_tokens_cost_and_wire_format(server: FakeOpenAIServer, api_key: str) -> None:
    key = CallKey("demo_mc", "train", "q-secret-id", "fake", 2, 3)
    gen = call(fake_spec(server), key=key)

    expected_text = "echo: What is 6 times 7?\nFinal Answer: 42"
    pt = count_tokens("Be brief.What is 6 times 7?")
    ct = count_tokens(expected_text)
    assert gen.text == expected_text
    assert (gen.prompt_tokens, gen.completion_tokens) == (pt, ct)
    assert gen.cost_usd == pytest.approx((pt * 1.0 + ct * 2.0) / 1e6)
    assert gen.attempts == 1 and gen.latency_s > 0 and gen.finish_reason == "stop"

    assert server.total_requests == 1
    body, headers = server.requests[0], server.headers[0]
    assert body["temperature"] == 0.7 and body["top_p"] == 0.95 and body["max_tokens"] == 64
    assert headers["authorization"] == f"Bearer {FAKE_KEY}"
    # The CallKey is for the simulator only: nothing of it goes over the wire.
    assert "q-secret-id" not in str(body) and "metadata" not in body


def test_cost_from_litellm_cost_map(server: FakeOpenAIServer, api_key: str, litellm_module) -> None:
    spec = fake_spec(
        server, litellm_model="openai/gpt-4o-mini", input_price_per_m=None, output_price_per_m=None
    )
    gen = call(spec)
    in_c, out_c = litellm_module.cost_per_token(
        model="openai/gpt-4o-mini",
        prompt_tokens=gen.prompt_tokens,
        completion_tokens=gen.completion_tokens,
    )
    assert gen.cost_usd == pytest.approx(in_c + out_c) and gen.cost_usd > 0


def test_unpriced_model_costs_zero_with_one_warning(server: FakeOpenAIServer, api_key: str) -> None:
    spec = fake_spec(server, name="unpriced", input_price_per_m=None, output_price_per_m=None)
    with pytest.warns(RuntimeWarning, match="unpriced"):
        gen = call(spec)
    assert gen.cost_usd == 0.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call must not warn again
        assert call(spec).cost_usd == 0.0


@pytest.mark.parametrize(
    ("fault", "times"),
    [
        (Status(429), 2),
        (Status(500), 2),
        (Status(502), 1),
        (Status(503), 1),
        (Disconnect(), 1),
        (Malformed(), 1),
        (Malformed(b'{"object": "chat.completion"}'), 1),
        (Malformed(b'{"choices": []}'), 1),
    ],
    ids=["429", "500", "502", "503", "disconnect", "truncated", "no-choices", "empty-choices"],
)
def test_transient_failures_are_retried(
    server: FakeOpenAIServer, api_key: str, fault: Any, times: int
) -> None:
    server.add_rule(fault, times=times)
    gen = call(fake_spec(server))
    assert gen.attempts == times + 1
    assert server.total_requests == times + 1
    assert gen.text.endswith("Final Answer: 42")


@pytest.mark.parametrize(
    ("code", "kind"), [(400, "bad_request"), (401, "auth"), (403, "permission"), (404, "not_found")]
)
def test_other_4xx_fail_at_once(
    server: FakeOpenAIServer, api_key: str, code: int, kind: str
) -> None:
    server.add_rule(Status(code), times=None)
    with pytest.raises(LLMCallError) as ei:
        call(fake_spec(server))
    assert ei.value.kind == kind and not ei.value.transient
    assert ei.value.attempts == 1 and server.total_requests == 1
    assert str(ei.value).startswith(f"{kind} {code} after 1 attempt (fake)")


def test_timeout_is_retried_then_succeeds(server: FakeOpenAIServer, api_key: str) -> None:
    server.add_rule(Hang(3.0), times=1)
    t0 = time.perf_counter()
    gen = call(fake_spec(server), GenParams(max_tokens=16, timeout_s=0.4, max_retries=2))
    assert gen.attempts == 2 and server.total_requests == 2
    assert time.perf_counter() - t0 < 2.5  # the hung request was abandoned at the timeout


def test_timeouts_exhaust_retries(server: FakeOpenAIServer, api_key: str) -> None:
    server.add_rule(Hang(3.0), times=None)
    with pytest.raises(LLMCallError) as ei:
        call(fake_spec(server), GenParams(max_tokens=16, timeout_s=0.3, max_retries=1))
    assert ei.value.kind == "timeout" and ei.value.attempts == 2 and server.total_requests == 2


def test_malformed_bodies_count_against_the_retry_limit(
    server: FakeOpenAIServer, api_key: str
) -> None:
    server.add_rule(Malformed(), times=None)
    with pytest.raises(LLMCallError) as ei:
        call(fake_spec(server), GenParams(max_tokens=16, timeout_s=5, max_retries=2))
    assert ei.value.kind == "malformed" and ei.value.attempts == 3
    assert server.total_requests == 3


def test_exhausted_retries_never_expose_the_key(
    server: FakeOpenAIServer,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_rule(Status(500, echo_auth=True), times=None)
    with pytest.raises(LLMCallError) as ei:
        call(fake_spec(server), GenParams(max_tokens=16, timeout_s=5, max_retries=2))
    err = ei.value
    assert err.kind == "server_error" and err.status_code == 500 and err.attempts == 3
    assert server.total_requests == 3
    assert "received Authorization" in err.detail  # the echoed body did reach us …
    texts = [
        str(err),
        repr(err),
        err.detail,
        "".join(traceback.format_exception(err)),
        caplog.text,
        *capsys.readouterr(),
    ]
    for text in texts:  # … but the key itself is nowhere
        assert FAKE_KEY not in text
        assert "0123456789abcdef" not in text


def test_auth_error_echo_is_scrubbed(server: FakeOpenAIServer, api_key: str) -> None:
    server.add_rule(Status(401, echo_auth=True), times=None)
    with pytest.raises(LLMCallError) as ei:
        call(fake_spec(server))
    assert ei.value.kind == "auth" and FAKE_KEY not in str(ei.value)
    assert "[REDACTED]" in ei.value.detail


def test_missing_key_fails_without_a_request(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(LLMCallError) as ei:
        call(fake_spec(server))
    assert ei.value.kind == "missing_key" and KEY_ENV in str(ei.value)
    assert server.total_requests == 0


def test_keyless_server_gets_a_placeholder_never_the_environment_key(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local server (llama.cpp, vLLM, Ollama) configured without api_key_env: litellm's OpenAI
    # route would refuse to call without a key, or send OPENAI_API_KEY to that server.
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    gen = call(fake_spec(server, api_key_env=None), GenParams(max_tokens=8, max_retries=0))
    assert gen.text.startswith("echo: ") and gen.attempts == 1
    assert server.headers[-1]["authorization"] == f"Bearer {client_module.KEYLESS_API_KEY}"
    monkeypatch.delenv("OPENAI_API_KEY")
    call(fake_spec(server, api_key_env=None), GenParams(max_tokens=8, max_retries=0))
    assert server.total_requests == 2


def test_concurrency_limit_is_respected(server: FakeOpenAIServer, api_key: str) -> None:
    server.add_rule(Delay(0.15), times=None)
    spec = fake_spec(server, max_concurrency=3)
    client = fast_client()

    async def many() -> list[Any]:
        return await asyncio.gather(*(client.generate(spec, MESSAGES, PARAMS) for _ in range(12)))

    gens = asyncio.run(many())
    assert len(gens) == 12 and server.total_requests == 12
    assert server.max_in_flight == 3


def test_concurrency_limit_holds_across_threads(server: FakeOpenAIServer, api_key: str) -> None:
    # Prefect runs shard tasks in worker threads, each with its own event loop.
    import threading

    server.add_rule(Delay(0.1), times=None)
    spec = fake_spec(server, max_concurrency=2)
    client = fast_client()

    def worker() -> None:
        asyncio.run(_gather(client, spec, 3))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.total_requests == 9 and server.max_in_flight == 2


async def _gather(client: LLMClient, spec: ModelSpec, n: int) -> list[Any]:
    return await asyncio.gather(*(client.generate(spec, MESSAGES, PARAMS) for _ in range(n)))


def test_rpm_limit_paces_calls(server: FakeOpenAIServer, api_key: str) -> None:
    # rpm 240 paced at 98%: one request every 0.255 s, the first at once (7 gaps ≈ 1.79 s).
    spec = fake_spec(server, rpm=240, max_concurrency=16)
    t0 = time.perf_counter()
    asyncio.run(_gather(fast_client(), spec, 8))
    assert time.perf_counter() - t0 >= 0.95
    assert server.total_requests == 8


def test_tpm_limit_paces_calls_by_estimated_tokens(server: FakeOpenAIServer, api_key: str) -> None:
    # Each call reserves prompt estimate + max_tokens = 15 + 16 = 31 tokens. tpm 6000 paced at
    # 98 tokens/s from a one-token bucket: 6 concurrent calls (186 tokens) need >= 1.8 s.
    params = GenParams(max_tokens=16, timeout_s=5.0, max_retries=0)
    assert estimate_tokens(MESSAGES) + params.max_tokens == 31
    spec = fake_spec(server, tpm=6000, max_concurrency=16)
    client = fast_client()

    async def six() -> list[Any]:
        return await asyncio.gather(*(client.generate(spec, MESSAGES, params) for _ in range(6)))

    t0 = time.perf_counter()
    asyncio.run(six())
    assert time.perf_counter() - t0 >= 0.8


@pytest.mark.parametrize("bucket", ["old", "paced"])
def test_rpm_limit_keeps_a_sliding_window_limit(
    litellm_module, api_key: str, monkeypatch: pytest.MonkeyPatch, bucket: str
) -> None:
    # Issue 14: a provider allowing 40 requests per sliding 4 s window (rpm 600, scaled down),
    # 50 calls at once. The bucket dars had (a second of traffic, full at start) sends 10 at
    # once then 10/s, so the first window sees 50 and the server answers 429s; the paced bucket
    # (98% of the rate, no burst) gets none.
    if bucket == "old":
        old = functools.partial(client_module.ModelLimits, headroom=1.0, burst_s=1.0)
        monkeypatch.setattr(client_module, "ModelLimits", old)
    with FakeOpenAIServer(rate_limit=(40, 4.0)) as server:
        spec = fake_spec(server, rpm=600, max_concurrency=16)
        # Retry-After honoured in full (backoff_max_s): a 429 is retried when the window allows.
        client = LLMClient(backoff_base_s=0.01, backoff_max_s=5.0)
        gens = asyncio.run(_gather(client, spec, 50))
    assert len(gens) == 50  # every call succeeded (429s were retried)
    if bucket == "old":
        assert server.rate_limited > 0
    else:
        assert server.rate_limited == 0 and len(server.admitted_at) == 50


def test_retry_after_header_is_honoured(server: FakeOpenAIServer, api_key: str) -> None:
    server.add_rule(Status(429, retry_after=0.4), times=1)
    client = LLMClient(backoff_base_s=0.01, backoff_max_s=1.0)
    t0 = time.perf_counter()
    gen = call(fake_spec(server), client=client)
    assert gen.attempts == 2 and time.perf_counter() - t0 >= 0.4


def test_extra_params_cannot_override_transport(server: FakeOpenAIServer, api_key: str) -> None:
    spec = fake_spec(server, extra_params={"timeout": 1, "seed": 3})
    with pytest.raises(ValueError, match=r"extra_params may not set \['timeout'\]"):
        call(spec)
    gen = call(fake_spec(server, extra_params={"seed": 3}))
    assert gen.attempts == 1 and server.requests[-1]["seed"] == 3


# -- pure helpers ------------------------------------------------------------------------------


def test_backoff_grows_with_jitter_and_respects_retry_after() -> None:
    c = LLMClient(backoff_base_s=1.0, backoff_max_s=8.0)
    for attempt, hi in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 8.0)]:
        d = c.backoff_s(attempt)
        assert hi / 2 <= d <= hi
    assert c.backoff_s(1, retry_after=5.0) >= 5.0
    assert c.backoff_s(1, retry_after=100.0) <= 8.0


# -- in-process providers ----------------------------------------------------------------------


class _Handler:
    """Stands in for ``litellm.CustomLLM`` in the fake litellm below."""


def _fake_litellm(*existing: dict[str, Any]) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(CustomLLM=_Handler, custom_provider_map=list(existing))


def _providers(**factories: Any) -> Registry:
    reg: Registry = Registry("LLM provider", Callable, instances=True)
    for name, factory in factories.items():
        reg.add(name, factory)
    return reg


def test_every_registered_provider_is_installed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    def factory(name: str) -> Callable[[], _Handler]:
        return lambda: made.append(name) or _Handler()

    monkeypatch.setattr(client_module, "PROVIDERS", _providers(mine=factory("mine")))
    theirs = {"provider": "theirs", "custom_handler": object()}
    lit = _fake_litellm(theirs)
    client_module._install_providers(lit)
    assert [p["provider"] for p in lit.custom_provider_map] == ["theirs", "mine"]
    assert lit.custom_provider_map[0] is theirs and isinstance(
        lit.custom_provider_map[1]["custom_handler"], _Handler
    )
    client_module._install_providers(lit)  # already there: not made or added again
    assert made == ["mine"] and len(lit.custom_provider_map) == 2


def test_a_broken_provider_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> _Handler:
        raise ImportError("no module named my_pkg")

    monkeypatch.setattr(client_module, "PROVIDERS", _providers(mine=broken))
    with pytest.raises(RuntimeError, match=r"LLM provider 'mine' .*failed to load.*my_pkg"):
        client_module._install_providers(_fake_litellm())
    monkeypatch.setattr(client_module, "PROVIDERS", _providers(mine=lambda: "not a handler"))
    with pytest.raises(TypeError, match=r"'mine'.*litellm.CustomLLM, got str"):
        client_module._install_providers(_fake_litellm())


def test_only_in_process_providers_get_the_call_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = CallKey("demo_mc", "train", "q1", "m", 0, 1)
    client = LLMClient()

    def kwargs(route: str) -> dict[str, Any]:
        spec = ModelSpec(name="m", litellm_model=route)
        return client._request_kwargs(spec, MESSAGES, PARAMS, key, None)

    # The simulated pool, registered through the entry point of this package.
    assert kwargs("dars-sim/mid")["metadata"] == {"dars_call_key": asdict(key)}
    for route in ("openai/gpt-4o", "openrouter/dars-sim/mid", "dars-simulated/mid"):
        assert "metadata" not in kwargs(route), route
    monkeypatch.setattr(client_module, "PROVIDERS", _providers(mine=_Handler))
    assert kwargs("mine/model")["metadata"]["dars_call_key"]["query_id"] == "q1"
    assert "metadata" not in kwargs("dars-sim/mid")  # a prefix is only a provider if registered


def test_llm_never_imports_the_simulator() -> None:
    from dars._layers import import_graph

    graph = import_graph()
    llm = {m: deps for m, deps in graph.items() if m == "dars.llm" or m.startswith("dars.llm.")}
    assert {"dars.llm.types", "dars.llm.errors", "dars.llm.limits", "dars.llm.client"} <= set(llm)
    assert not [(m, d) for m, deps in llm.items() for d in deps if d.startswith("dars.sim")]
    sim_uses = {d for m, deps in graph.items() if m.startswith("dars.sim") for d in deps}
    assert {d for d in sim_uses if d.startswith("dars.llm")} == {"dars.llm.types"}
    # And at run time: importing the client (litellm is not imported yet) loads no simulator.
    code = (
        "import sys, dars.llm, dars.llm.client; "
        "print(sorted(m for m in sys.modules if m.startswith('dars.sim')))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# empty completions (issue 12, item 9): a provider's empty body is a transient fault


@pytest.mark.parametrize("content", ["", "  \n\t", None], ids=["empty", "whitespace", "null"])
def test_empty_completions_are_retried(
    server: FakeOpenAIServer, api_key: str, content: str | None
) -> None:
    server.add_rule(Reply(content), times=2)
    gen = call(fake_spec(server))
    assert gen.attempts == 3 and server.total_requests == 3
    assert gen.text.endswith("Final Answer: 42")
    # The provider billed each empty attempt: kept apart from the answer's cost.
    empty_cost = (
        count_tokens("Be brief.What is 6 times 7?") + 2 * count_tokens(content or "")
    ) / 1e6
    assert gen.empty_cost_usd == pytest.approx(2 * empty_cost)
    assert gen.billed_usd == pytest.approx(gen.cost_usd + 2 * empty_cost)


def test_empty_completions_exhaust_retries_as_an_error(
    server: FakeOpenAIServer, api_key: str
) -> None:
    server.add_rule(Reply(" \n"), times=None)
    with pytest.raises(EmptyCompletionError) as ei:
        call(fake_spec(server), GenParams(max_tokens=16, timeout_s=5, max_retries=2))
    err = ei.value
    assert isinstance(err, LLMCallError) and err.kind == "empty" and err.transient
    assert err.attempts == 3 and server.total_requests == 3
    assert str(err).startswith("empty after 3 attempts (fake): empty completion")
    empty_cost = (count_tokens("Be brief.What is 6 times 7?") + 2 * count_tokens(" \n")) / 1e6
    assert err.billed_usd == pytest.approx(3 * empty_cost)


def test_an_empty_completion_cut_at_max_tokens_fails_at_once(
    server: FakeOpenAIServer, api_key: str
) -> None:
    # A reasoning model that spent its budget thinking: the same budget ends the same way.
    server.add_rule(Reply(None, finish_reason="length"), times=None)
    with pytest.raises(EmptyCompletionError) as ei:
        call(fake_spec(server))
    assert ei.value.kind == "empty_truncated" and not ei.value.transient
    assert ei.value.attempts == 1 and server.total_requests == 1
    assert "raise max_tokens" in str(ei.value)


def test_empty_completions_are_answers_when_accepted(
    server: FakeOpenAIServer, api_key: str
) -> None:
    server.add_rule(Reply("  "), times=None)
    gen = call(fake_spec(server), GenParams(max_tokens=16, empty_completion="accept"))
    assert gen.text == "  " and gen.attempts == 1 and server.total_requests == 1
    assert gen.empty_cost_usd == 0.0


# --------------------------------------------------------------------------------------------
# keys echoed in completions (issue 12, item 12)


def test_a_key_echoed_inside_a_completion_is_scrubbed(
    server: FakeOpenAIServer, api_key: str
) -> None:
    server.add_rule(Reply("Final Answer: 42.", echo_auth=True), times=1)
    gen = call(fake_spec(server))
    assert server.headers[0]["authorization"] == f"Bearer {FAKE_KEY}"
    assert gen.text == "Final Answer: 42. My key is [REDACTED]."
    # Only key values go: key-shaped text that is not a key we hold is the model's answer.
    server.add_rule(Reply("use api_key=sk-not-ours-123456789 here"), times=1)
    assert call(fake_spec(server)).text == "use api_key=sk-not-ours-123456789 here"


def test_another_configured_key_echoed_in_a_completion_is_scrubbed(
    server: FakeOpenAIServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rewriter's key, never read in this process, shows up in a pool model's answer.
    other = "rw-canary-" + "Q" * 20
    monkeypatch.setenv("DARS_TEST_OTHER_KEY", other)
    remember_keys([fake_spec(server, name="rewriter", api_key_env="DARS_TEST_OTHER_KEY"), None])
    server.add_rule(Reply(f"I was told {other}; Final Answer: 1"), times=1)
    assert call(fake_spec(server)).text == "I was told [REDACTED]; Final Answer: 1"
