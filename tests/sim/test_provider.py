"""The ``dars-sim`` litellm provider (``dars.sim.provider``): found through the entry point,
answering the client exactly as the world does, from the world it is given."""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict
from importlib.metadata import entry_points

import pytest

from dars.benchmarks.prompts import parse_rewrites
from dars.llm import PROVIDERS, CallKey, GenParams, LLMCallError, LLMClient
from dars.sim import default_sim_specs, sim_rewriter_spec, sim_world

DEMOS = ("demo_mc", "demo_math", "demo_span")
PARAMS = GenParams(max_tokens=768, timeout_s=10.0, max_retries=0)


def run(coro):
    return asyncio.run(coro)


# -- the full path through litellm -------------------------------------------------------------


def test_generate_through_litellm_matches_the_world(demo, litellm_module, intended_score) -> None:
    world = sim_world()
    specs = default_sim_specs()
    client = LLMClient()

    async def go() -> list[tuple]:
        out = []
        for name in DEMOS:
            bench, items = demo[name]
            for i, spec in enumerate(specs):
                item = items[i]
                key = CallKey(name, "train", item.query_id, spec.name, i % 3, 1)
                msgs = bench.decode_messages(item)
                gen = await client.generate(spec, msgs, PARAMS, key=key)
                out.append((name, bench, item, spec, key, msgs, gen))
        return out

    for name, bench, item, spec, key, msgs, gen in run(go()):
        text, pt, ct = world.respond(spec.litellm_model, msgs, PARAMS.max_tokens, key)
        assert gen.text == text and (gen.prompt_tokens, gen.completion_tokens) == (pt, ct)
        assert gen.cost_usd == pytest.approx(
            (pt * spec.input_price_per_m + ct * spec.output_price_per_m) / 1e6
        )
        assert gen.attempts == 1 and ct <= PARAMS.max_tokens
        kind, _ = world.outcome(key, spec.name)
        assert bench.score(gen.text, item).value == pytest.approx(
            intended_score(world, name, item, kind)
        )


def test_sim_errors_fail_at_once_with_a_clear_kind(demo, litellm_module) -> None:
    spec = default_sim_specs()[0]
    bench, items = demo["demo_mc"]
    msgs = bench.decode_messages(items[0])
    client = LLMClient()
    cases = [
        (spec, CallKey("demo_mc", "train", "no-such-id", spec.name), "bad_request", "no-such-id"),
        (spec, None, "bad_request", "no CallKey"),
        (
            spec.model_copy(update={"litellm_model": "dars-sim/nope"}),
            CallKey("demo_mc", "train", items[0].query_id, "x"),
            "not_found",
            "unknown model 'nope'",
        ),
    ]
    for s, key, kind, text in cases:
        with pytest.raises(LLMCallError) as ei:
            run(client.generate(s, msgs, PARAMS, key=key))
        assert ei.value.kind == kind and ei.value.attempts == 1
        assert text in str(ei.value)


# -- the simulated rewriter --------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 40])
def test_rewriter_returns_n_parseable_rewrites_keeping_numbers(
    demo, litellm_module, n: int
) -> None:
    spec = sim_rewriter_spec()
    client = LLMClient()
    for name in DEMOS:
        bench, items = demo[name]
        item = items[3]
        key = CallKey(name, "train", item.query_id, spec.name, n_rewrites=n)
        gen = run(client.generate(spec, bench.rewrite_messages(item, n), PARAMS, key=key))
        rewrites = parse_rewrites(gen.text, n)
        assert len(rewrites) == n == len(set(rewrites))
        assert item.question not in rewrites
        numbers = sorted(re.findall(r"\d+(?:\.\d+)?", item.question))
        for r in rewrites:
            assert sorted(re.findall(r"\d+(?:\.\d+)?", r)) == numbers or "(version" in r
            # Choices and passages are not part of a rewrite; the decode prompt keeps them.
            msgs = bench.decode_messages(item, question=r)
            for choice in item.choices or ():
                assert choice in msgs[-1]["content"]
            if item.context:
                assert item.context in msgs[-1]["content"]
        assert gen.cost_usd > 0


# -- the provider as a plug-in -----------------------------------------------------------------


def test_the_provider_is_found_through_the_entry_point(litellm_module) -> None:
    from dars.sim.provider import make_provider

    eps = {ep.name: ep.value for ep in entry_points(group="dars.llm_providers")}
    assert eps["dars-sim"] == "dars.sim.provider:make_provider"
    assert "dars-sim" in PROVIDERS.names() and PROVIDERS.get("dars-sim") is make_provider
    # The client installed it in litellm, answering from the process-wide world.
    (handler,) = [
        p["custom_handler"]
        for p in litellm_module.custom_provider_map
        if p["provider"] == "dars-sim"
    ]
    assert isinstance(handler, litellm_module.CustomLLM) and handler.world is None


def _ask(handler, model: str, key: CallKey, messages: list[dict], litellm_module):
    """One synchronous call of a provider handler, as litellm makes it."""
    return handler.completion(
        model=model,
        messages=messages,
        api_base=None,
        custom_prompt_dict={},
        model_response=litellm_module.ModelResponse(),
        print_verbose=print,
        encoding=None,
        api_key=None,
        logging_obj=None,
        optional_params={"max_tokens": 256},
        litellm_params={"metadata": {"dars_call_key": asdict(key)}},
    )


def test_the_provider_answers_from_the_world_it_is_given(demo, litellm_module) -> None:
    from dars.sim import SimWorld, make_provider, set_sim_world

    bench, items = demo["demo_mc"]
    item, msgs = items[2], bench.decode_messages(items[2])
    key = CallKey("demo_mc", "train", item.query_id, "mid", 0, 0)
    other = SimWorld(seed=7)
    other.register_items("demo_mc", items)
    want_default = sim_world().respond("mid", msgs, 256, key)
    want_other = other.respond("mid", msgs, 256, key)
    assert want_default != want_other  # another seed, another response

    given = _ask(make_provider(other), "mid", key, msgs, litellm_module)
    assert given.choices[0].message.content == want_other[0]
    assert (given.usage.prompt_tokens, given.usage.completion_tokens) == want_other[1:]
    assert given.model == "dars-sim/mid"

    # Without a world, the provider looks the process-wide world up at each call.
    default = make_provider()
    assert (
        _ask(default, "mid", key, msgs, litellm_module).choices[0].message.content
        == (want_default[0])
    )
    old = set_sim_world(other)
    try:
        assert sim_world() is other
        got = _ask(default, "mid", key, msgs, litellm_module)
        assert got.choices[0].message.content == want_other[0]
    finally:
        assert set_sim_world(old) is other


def test_pool_specs_route_to_the_provider() -> None:
    specs = default_sim_specs(max_concurrency=3)
    assert [s.name for s in specs] == [
        "cheap-weak",
        "cheap-math",
        "mid",
        "strong-expensive",
        "flash",
        "strong-cheap",
    ]
    assert all(s.litellm_model == f"dars-sim/{s.name}" and s.max_concurrency == 3 for s in specs)
    assert specs[2].input_price_per_m == 0.23 and specs[2].output_price_per_m == 0.40
    rw = sim_rewriter_spec()
    assert (rw.name, rw.litellm_model, rw.max_concurrency) == ("rewriter", "dars-sim/rewriter", 32)
