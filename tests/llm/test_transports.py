"""The client's transports (``ModelSpec.transport``) give the same generations and the same
failures: the direct HTTP transport against litellm on the fake OpenAI-compatible server, the
simulated pool's direct path against its litellm route; and litellm's per-call cost calculation
is skipped for the client's calls only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from dars.config import ModelSpec
from dars.llm import CallKey, GenParams, LLMCallError, LLMClient
from tests.fakeserver import Disconnect, FakeOpenAIServer, Hang, Malformed, Reply, Status

KEY_ENV = "DARS_TEST_TRANSPORT_KEY"
FAKE_KEY = "sk-dars-transport-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Name the largest planet, in one word."}]
PARAMS = GenParams(max_tokens=64, temperature=0.7, top_p=0.95, timeout_s=2.0, max_retries=2)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)


def spec_for(server: FakeOpenAIServer, transport: str, **over: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "name": "fake",
        "litellm_model": "openai/gpt-4o-mini",
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "input_price_per_m": 1.0,
        "output_price_per_m": 2.0,
        "transport": transport,
    }
    fields.update(over)
    return ModelSpec(**fields)


def outcome(spec: ModelSpec, params: GenParams = PARAMS) -> tuple:
    """What the store would keep of one call: the answer and its accounting, or the failure."""

    async def go() -> Any:
        client = LLMClient(backoff_base_s=0.01, backoff_max_s=0.05)
        try:
            return await client.generate(spec, MESSAGES, params)
        finally:
            await client.aclose()

    try:
        g = asyncio.run(go())
    except LLMCallError as err:
        return ("error", err.kind, err.status_code, err.attempts, err.billed_usd)
    return ("ok", g.text, g.prompt_tokens, g.completion_tokens, g.cost_usd, g.attempts,
            g.finish_reason, g.empty_cost_usd)  # fmt: skip


SCENARIOS: dict[str, list[tuple[Any, int | None]]] = {
    "ok": [],
    "429-then-ok": [(Status(429), 1)],
    "5xx-twice": [(Status(500), 1), (Status(503), 1)],
    "5xx-exhausted": [(Status(502), None)],
    "disconnect": [(Disconnect(), 1)],
    "truncated-json": [(Malformed(), 1)],
    "no-choices": [(Malformed(b'{"choices": []}'), None)],
    "empty-then-ok": [(Reply("  "), 1)],
    "empty-truncated": [(Reply("", finish_reason="length"), None)],
    "bad-request": [(Status(400), None)],
    "auth": [(Status(401), None)],
    "permission": [(Status(403), None)],
    "not-found": [(Status(404), None)],
    "unprocessable": [(Status(422), None)],
    "context-window": [(Status(400, "This model's maximum context length is 8192 tokens."), None)],
    "content-filter": [
        (Status(400, "Your request was rejected as a result of the safety system."), None)
    ],
    "timeout-then-ok": [(Hang(4.0), 1)],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_http_transport_answers_and_fails_like_litellm(litellm_module, scenario: str) -> None:
    results: dict[str, Any] = {}
    for transport in ("litellm", "http"):
        with FakeOpenAIServer() as srv:
            for fault, times in SCENARIOS[scenario]:
                srv.add_rule(fault, times=times)
            results[transport] = outcome(spec_for(srv, transport))
            results[transport + " requests"] = srv.total_requests
    assert results["http"] == results["litellm"], results
    assert results["http requests"] == results["litellm requests"]
    if scenario in ("context-window", "content-filter"):  # the message, not the status, decides
        assert results["http"][1] == scenario.replace("-", "_")


def test_http_transport_wire_format(server: FakeOpenAIServer) -> None:
    spec = spec_for(server, "http", extra_params={"seed": 3})
    assert outcome(spec)[0] == "ok"
    body, headers = server.requests[0], server.headers[0]
    assert body["model"] == "gpt-4o-mini" and body["messages"] == MESSAGES
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.95, 64)
    assert body["seed"] == 3 and "metadata" not in body and "api_key" not in body
    assert headers["authorization"] == f"Bearer {FAKE_KEY}"


def test_http_transport_keyless_server_gets_the_placeholder(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-sent-to-a-local-server-123")
    assert outcome(spec_for(server, "http", api_key_env=None))[0] == "ok"
    assert server.headers[0]["authorization"] == "Bearer no-key"


def test_http_transport_honours_retry_after(server: FakeOpenAIServer) -> None:
    server.add_rule(Status(429, retry_after=0.4), times=1)
    client = LLMClient(backoff_base_s=0.01, backoff_max_s=1.0)

    async def go() -> Any:
        t0 = asyncio.get_running_loop().time()
        g = await client.generate(spec_for(server, "http"), MESSAGES, PARAMS)
        await client.aclose()
        return g, asyncio.get_running_loop().time() - t0

    gen, waited = asyncio.run(go())
    assert gen.attempts == 2 and waited >= 0.4


def test_http_transport_scrubs_an_echoed_key(server: FakeOpenAIServer) -> None:
    server.add_rule(Status(401, echo_key=True), times=1)
    with pytest.raises(LLMCallError) as ei:
        asyncio.run(LLMClient().generate(spec_for(server, "http"), MESSAGES, PARAMS))
    assert ei.value.kind == "auth" and FAKE_KEY not in str(ei.value)


def test_http_transport_needs_an_openai_route() -> None:
    with pytest.raises(ValidationError, match="transport 'http'"):
        ModelSpec(name="m", litellm_model="deepinfra/x/y", transport="http")
    with pytest.raises(ValidationError):
        ModelSpec(name="m", litellm_model="openai/x", transport="grpc")
    assert ModelSpec(name="m", litellm_model="openai/x", transport="http").api_base is None


def test_http_transport_shares_one_session_per_loop(server: FakeOpenAIServer) -> None:
    client = LLMClient()
    spec = spec_for(server, "http")

    async def go() -> list[int]:
        ids = []
        for _ in range(3):
            await client.generate(spec, MESSAGES, PARAMS)
            ids.append(id(client._http.session()))
        await asyncio.gather(*(client.generate(spec, MESSAGES, PARAMS) for _ in range(8)))
        ids.append(id(client._http.session()))
        await client.aclose()
        return ids

    assert len(set(asyncio.run(go()))) == 1


# --------------------------------------------------------------------------------------------
# litellm's own cost calculation: skipped for our calls, not for anyone else's


def test_litellm_prices_other_callers_but_not_ours(
    server: FakeOpenAIServer, litellm_module
) -> None:
    import dars.llm.client as client_module

    kwargs = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "no-key",
        "timeout": 5,
        "num_retries": 0,
        "max_retries": 0,
    }

    async def theirs() -> Any:
        return await litellm_module.acompletion(**kwargs)

    async def ours() -> Any:
        return await client_module._litellm_completion(litellm_module, dict(kwargs))

    assert asyncio.run(theirs())._hidden_params["response_cost"] > 0
    assert asyncio.run(ours())._hidden_params["response_cost"] is None
    # The flag does not outlive our call.
    assert not client_module._OUR_CALL.get()
    assert asyncio.run(theirs())._hidden_params["response_cost"] > 0
    # Our cost is still litellm's cost map, through cost_per_token.
    spec = ModelSpec(name="m", litellm_model="openai/gpt-4o-mini", api_base=server.base_url)
    gen = asyncio.run(LLMClient().generate(spec, MESSAGES, PARAMS))
    in_c, out_c = litellm_module.cost_per_token(
        model="openai/gpt-4o-mini",
        prompt_tokens=gen.prompt_tokens,
        completion_tokens=gen.completion_tokens,
    )
    assert gen.cost_usd == pytest.approx(in_c + out_c) and gen.cost_usd > 0


# --------------------------------------------------------------------------------------------
# the simulated pool: direct path (default) and litellm route


def test_simulated_pool_direct_path_equals_the_litellm_route(litellm_module) -> None:
    import dars.benchmarks as B
    import dars.llm.client as client_module
    from dars.sim import default_sim_specs, register_items, sim_rewriter_spec

    bench = B.get("demo_math", n_items=20)
    items = bench.load()
    register_items("demo_math", items)
    specs = [*default_sim_specs(), sim_rewriter_spec()]
    params = GenParams(max_tokens=512, timeout_s=10.0, max_retries=0)
    calls = []
    for i, item in enumerate(items):
        spec = specs[i % len(specs)]
        n = 3 if spec.name == "rewriter" else None
        key = CallKey("demo_math", "train", item.query_id, spec.name, i % 4 - 1, i % 2, n)
        calls.append((spec, key, bench.decode_messages(item)))

    seen: list[str] = []
    real = client_module._litellm_completion

    async def counting(litellm: Any, kwargs: dict[str, Any]) -> Any:
        seen.append(kwargs["model"])
        return await real(litellm, kwargs)

    async def run(transport: str) -> list[tuple]:
        client = LLMClient()
        out = []
        for spec, key, msgs in calls:
            s = spec.model_copy(update={"transport": transport})
            g = await client.generate(s, msgs, params, key=key)
            out.append((g.text, g.prompt_tokens, g.completion_tokens, g.cost_usd, g.attempts,
                        g.finish_reason))  # fmt: skip
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(client_module, "_litellm_completion", counting)
        via_litellm = asyncio.run(run("litellm"))
        assert len(seen) == len(calls)  # every call went through litellm
        direct = asyncio.run(run("auto"))
        assert len(seen) == len(calls)  # and none of these
    assert direct == via_litellm


def test_simulated_errors_are_the_same_on_both_paths(litellm_module) -> None:
    from dars.sim import default_sim_specs

    spec = default_sim_specs()[0]
    cases = [
        (spec, CallKey("demo_mc", "train", "no-such-id", spec.name)),
        (spec, None),
        (
            spec.model_copy(update={"litellm_model": "dars-sim/nope"}),
            CallKey("demo_mc", "train", "q", "x"),
        ),
    ]
    params = GenParams(max_tokens=64, timeout_s=5.0, max_retries=2)
    for s, key in cases:
        got = {}
        for transport in ("litellm", "auto"):
            with pytest.raises(LLMCallError) as ei:
                asyncio.run(
                    LLMClient().generate(
                        s.model_copy(update={"transport": transport}), MESSAGES, params, key=key
                    )
                )
            got[transport] = (ei.value.kind, ei.value.status_code, ei.value.attempts)
        assert got["auto"] == got["litellm"], (key, got)


def test_litellm_route_builds_one_openai_client_per_loop(
    server: FakeOpenAIServer, litellm_module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm caches its provider client: the litellm route makes no HTTP client per call."""
    import litellm.llms.openai.openai as openai_route

    made: list[object] = []
    real = openai_route.AsyncOpenAI

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(openai_route, "AsyncOpenAI", Counting)
    client = LLMClient()
    spec = spec_for(server, "litellm", litellm_model="openai/fresh-cache-key-model")

    async def go() -> None:
        for _ in range(3):
            await client.generate(spec, MESSAGES, PARAMS)
        await asyncio.gather(*(client.generate(spec, MESSAGES, PARAMS) for _ in range(12)))

    asyncio.run(go())
    assert server.total_requests == 15 and len(made) == 1  # a new api_base: one new client
