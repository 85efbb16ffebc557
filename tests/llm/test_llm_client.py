"""The litellm client against the fake OpenAI-compatible server: retries, limits, cost, keys."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Any

import pytest

from dars.config import ModelSpec
from dars.llm import CallKey, GenParams, LLMCallError, LLMClient, TokenBucket, scrub
from dars.llm.client import classify_exception, estimate_tokens
from tests.fakeserver import (
    Delay,
    Disconnect,
    FakeOpenAIServer,
    Hang,
    Malformed,
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
    # rpm 240 = 4 requests/s with a one-second bucket: 4 go at once, the next 4 at 0.25 s steps.
    spec = fake_spec(server, rpm=240, max_concurrency=16)
    t0 = time.perf_counter()
    asyncio.run(_gather(fast_client(), spec, 8))
    assert time.perf_counter() - t0 >= 0.95
    assert server.total_requests == 8


def test_tpm_limit_paces_calls_by_estimated_tokens(server: FakeOpenAIServer, api_key: str) -> None:
    # Each call reserves prompt estimate + max_tokens = 15 + 16 = 31 tokens. tpm 6000 = 100
    # tokens/s with a 100-token bucket: 6 concurrent calls (186 tokens) need >= 0.86 s.
    params = GenParams(max_tokens=16, timeout_s=5.0, max_retries=0)
    assert estimate_tokens(MESSAGES) + params.max_tokens == 31
    spec = fake_spec(server, tpm=6000, max_concurrency=16)
    client = fast_client()

    async def six() -> list[Any]:
        return await asyncio.gather(*(client.generate(spec, MESSAGES, params) for _ in range(6)))

    t0 = time.perf_counter()
    asyncio.run(six())
    assert time.perf_counter() - t0 >= 0.8


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


def test_token_bucket_reservations_with_a_fake_clock() -> None:
    now = [0.0]
    b = TokenBucket(rate=2.0, capacity=2.0, clock=lambda: now[0])
    assert [b.reserve(1), b.reserve(1)] == [0.0, 0.0]  # the burst
    assert b.reserve(1) == pytest.approx(0.5)  # then one unit every 1/rate seconds, in order
    assert b.reserve(1) == pytest.approx(1.0)
    now[0] = 10.0  # refilled (capped at capacity)
    assert b.reserve(5) == 0.0  # larger than the bucket: waits for a full bucket, then borrows
    assert b.reserve(1) == pytest.approx(2.0)  # level -3 → needs 4 units of refill at 2/s
    b.refund(3)  # level -4 → -1
    assert b.reserve(1) == pytest.approx(1.0)


def test_backoff_grows_with_jitter_and_respects_retry_after() -> None:
    c = LLMClient(backoff_base_s=1.0, backoff_max_s=8.0)
    for attempt, hi in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 8.0)]:
        d = c.backoff_s(attempt)
        assert hi / 2 <= d <= hi
    assert c.backoff_s(1, retry_after=5.0) >= 5.0
    assert c.backoff_s(1, retry_after=100.0) <= 8.0


def test_scrub_removes_known_and_key_shaped_secrets() -> None:
    text = (
        "bad key sk-abcdef123456 header Authorization: Bearer tok_987654 and api_key=xyz123 MYKEY"
    )
    out = scrub(text, ["MYKEY"])
    for secret in ("sk-abcdef123456", "tok_987654", "xyz123", "MYKEY"):
        assert secret not in out
    assert out.startswith("bad key [REDACTED]")


def test_classify_plain_exceptions(litellm_module) -> None:
    assert classify_exception(TimeoutError())[0] == "timeout"
    assert classify_exception(ConnectionResetError())[0] == "connection"
    assert classify_exception(RuntimeError("bug"))[0] == "unknown"


def test_estimate_tokens() -> None:
    assert estimate_tokens([{"role": "user", "content": "x" * 40}]) == 14


def test_genparams_for_benchmark_and_validation() -> None:
    from dars.config import Experiment

    exp = Experiment.model_construct(
        protocol=__import__("dars.config", fromlist=["Protocol"]).Protocol(),
        request_timeout_s=30.0,
        max_retries=2,
    )
    p = GenParams.for_benchmark(exp, "math500")
    assert (p.max_tokens, p.temperature, p.top_p, p.timeout_s, p.max_retries) == (
        3072,
        0.7,
        0.95,
        30.0,
        2,
    )
    with pytest.raises(ValueError, match="timeout_s"):
        GenParams(timeout_s=0)
