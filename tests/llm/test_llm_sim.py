"""The simulated pool: determinism, ground truth, agreement with the real scorers, rewriter."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

import dars.benchmarks as B
from dars.benchmarks.base import Item
from dars.benchmarks.prompts import parse_rewrites
from dars.llm import (
    CallKey,
    GenParams,
    LLMCallError,
    LLMClient,
    SimWorld,
    default_sim_specs,
    register_items,
    sim_rewriter_spec,
    sim_world,
)

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ("demo_mc", "demo_math", "demo_span")
PARAMS = GenParams(max_tokens=768, timeout_s=10.0, max_retries=0)


@pytest.fixture(scope="module")
def demo() -> dict[str, tuple[B.Benchmark, list[Item]]]:
    out = {}
    for name in DEMOS:
        bench = B.get(name, n_items=60)
        items = bench.load()
        register_items(name, items)
        out[name] = (bench, items)
    return out


def intended_score(world: SimWorld, dataset: str, item: Item, kind: str) -> float:
    if kind == "correct":
        return 1.0
    if kind == "partial":
        return world.partial_answer(dataset, item)[1]
    return 0.0


def noisy_world(unparseable_rate: float) -> SimWorld:
    """A world where items are of middling difficulty and a share of decodes end unparseably,
    so every outcome kind occurs."""
    base = SimWorld()
    return SimWorld(
        models={k: replace(m, unparseable_rate=unparseable_rate) for k, m in base.models.items()},
        profiles={
            k: replace(p, difficulty_mean=0.0, difficulty_sd=0.5, rewrite_sd=0.0)
            for k, p in base.profiles.items()
        },
    )


def run(coro):
    return asyncio.run(coro)


# -- the full path through litellm -------------------------------------------------------------


def test_generate_through_litellm_matches_the_world(demo, litellm_module) -> None:
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


# -- determinism -------------------------------------------------------------------------------

_CHILD = """
import hashlib, json, sys
import dars.benchmarks as B
from dars.llm import CallKey, SimWorld
w = SimWorld()
out = {}
for name in ("demo_mc", "demo_math", "demo_span"):
    bench = B.get(name, n_items=60)
    items = bench.load()
    w.register_items(name, items)
    for i, m in enumerate(sorted(w.models)):
        for d in range(3):
            key = CallKey(name, "train", items[i].query_id, m, d - 1, d)
            text, pt, ct = w.respond("dars-sim/" + m, bench.decode_messages(items[i]), 768, key)
            out[f"{name}|{m}|{d}"] = hashlib.sha256(f"{text}|{pt}|{ct}".encode()).hexdigest()
    key = CallKey(name, "train", items[0].query_id, "rewriter", n_rewrites=4)
    out[name + "|rewriter"] = w.rewrite_json(key)
print(json.dumps(out, sort_keys=True))
"""


def test_same_key_same_response_across_fresh_processes() -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        for seed in ("1", "2")
    ]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout))
    assert outs[0] == outs[1]
    assert len(set(outs[0].values())) == len(outs[0])  # different keys, different responses


def test_same_key_same_text_and_keys_matter(demo) -> None:
    world = SimWorld()
    bench, items = demo["demo_span"]
    world.register_items("demo_span", items)
    msgs = bench.decode_messages(items[0])
    key = CallKey("demo_span", "train", items[0].query_id, "mid", 2, 4)
    a = world.respond("mid", msgs, 512, key)
    assert world.respond("dars-sim/mid", msgs, 512, key) == a
    assert SimWorld(seed=0, models=world.models).register_items("demo_span", items) == 60
    others = {world.respond("mid", msgs, 512, replace(key, decode_id=d))[0] for d in range(6)}
    assert len(others) > 1
    assert world.respond("mid", msgs, 512, replace(key, split="test")) == a  # split is not seeded
    with pytest.raises(ValueError, match="different content"):
        world.register_items("demo_span", [replace(items[0], gold=("nope",))])


# -- agreement with the benchmark scorers ------------------------------------------------------


def test_every_simulated_response_scores_as_intended(demo) -> None:
    world = noisy_world(0.3)
    kinds: set[str] = set()
    for name in DEMOS:
        bench, items = demo[name]
        world.register_items(name, items)
        for item in items[:40]:
            for m in world.models:
                key = CallKey(name, "train", item.query_id, m, 0, 0)
                out = world.outcome(key, m)
                text = world.decode_text(key, m, 768, out)
                score = bench.score(text, item)
                kinds.add(out[0])
                assert score.value == pytest.approx(intended_score(world, name, item, out[0]))
                assert score.parse_ok == (out[0] != "unparseable"), text
    assert kinds == {"correct", "partial", "wrong", "unparseable"}


@pytest.mark.parametrize(
    ("task", "gold", "extra"),
    [
        ("mc", "D", {"choices": ("1", "2", "3", "4", "5")}),
        ("math", "\\frac{\\sqrt{3}}{2}", {}),
        ("math", "(1, 2)", {}),
        ("math", "-7", {}),
        ("math", "0.25", {}),
        ("math", "x^2+1", {}),
        ("span", ("Tom Brady", "Brady"), {"context": "Tom Brady threw 3 passes to Gronkowski."}),
        ("span", ("12 | 14",), {"context": "Scores were 12 and 14 in the first half."}),
    ],
)
def test_hand_made_items_score_as_intended(task: str, gold, extra: dict) -> None:
    from dars.benchmarks.scoring import score_by_task

    item = Item(
        query_id=f"h-{task}-{gold}", question="What is it?", gold=gold, task_type=task, **extra
    )
    world = noisy_world(0.1)
    world.register_items("hand", [item])
    seen = set()
    for d in range(40):
        key = CallKey("hand", "train", item.query_id, "mid", 0, d)
        out = world.outcome(key, "mid")
        seen.add(out[0])
        text = world.decode_text(key, "mid", 512, out)
        score = score_by_task(task, text, gold, choices=item.choices)
        assert score.value == pytest.approx(intended_score(world, "hand", item, out[0])), text
    assert {"correct", "wrong"} <= seen


# -- ground truth ------------------------------------------------------------------------------


def test_truth_frame_rows_and_consistency(demo) -> None:
    world = sim_world()
    frame = world.truth_frame(["demo_mc", "demo_span"], rewrite_ids=[-1, 0, 1])
    assert frame.height == 2 * 60 * 6 * 3
    assert frame.select("dataset", "query_id", "model", "rewrite_id").is_unique().all()
    row = frame.filter(pl.col("dataset") == "demo_span").row(7, named=True)
    assert row["p_true"] == pytest.approx(
        world.true_expected_score("demo_span", row["query_id"], row["model"], row["rewrite_id"])
    )
    assert row["expected_cost"] == pytest.approx(
        world.expected_cost("demo_span", row["query_id"], row["model"])
    )
    assert frame["p_true"].is_between(0, 1).all()
    assert (frame["p_true"] <= frame["p_correct"] + frame["p_correct"].max()).all()
    # The original question carries no rewrite shift: its logit is the rewrites' centre.
    item = demo["demo_mc"][1][0]
    world2 = SimWorld(
        profiles={
            k: replace(p, rewrite_sd=0.0, rewrite_model_sd=0.0) for k, p in world.profiles.items()
        }
    )
    world2.register_items("demo_mc", [item])
    assert world2.logit("demo_mc", item, "mid", -1) == world2.logit("demo_mc", item, "mid", 3)
    costs = frame.group_by("model").agg(pl.col("expected_cost").mean()).sort("expected_cost")
    assert costs["model"][0] == "cheap-weak" and costs["model"][-1] == "strong-expensive"


@pytest.mark.parametrize("dataset", ["demo_mc", "demo_span"])
def test_truth_matches_the_empirical_mean_under_the_real_scorer(demo, dataset: str) -> None:
    world = sim_world()
    bench, items = demo[dataset]
    truth = world.truth_frame([dataset], rewrite_ids=[1]).filter(
        pl.col("p_true").is_between(0.25, 0.75)
    )
    n = 300
    for row in truth.head(3).iter_rows(named=True):
        item = world.item(dataset, row["query_id"])
        scores = []
        for d in range(n):
            key = CallKey(dataset, "train", row["query_id"], row["model"], 1, d)
            scores.append(bench.score(world.decode_text(key, row["model"], 768), item).value)
        mean = sum(scores) / n
        se = math.sqrt(row["p_true"] * (1 - row["p_true"]) / n)
        assert abs(mean - row["p_true"]) < 4 * se + 0.01, (row, mean)


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


def test_rewriter_needs_n(demo) -> None:
    from dars.llm.sim import SimError

    item = demo["demo_mc"][1][0]
    with pytest.raises(SimError, match="n_rewrites"):
        sim_world().rewrite_json(CallKey("demo_mc", "train", item.query_id, "rewriter"))


def test_expected_cost_matches_simulated_costs(demo) -> None:
    world = sim_world()
    ids = [it.query_id for it in demo["demo_math"][1][:20]]
    sim = world.simulate_frame("demo_math", ids, rewrite_ids=[0, 1], decode_ids=range(10))
    truth = world.truth_frame(["demo_math"], rewrite_ids=[0]).filter(pl.col("query_id").is_in(ids))
    got = sim.group_by("model").agg(pl.col("cost_usd").mean()).sort("model")
    want = truth.group_by("model").agg(pl.col("expected_cost").mean()).sort("model")
    for g, w in zip(got["cost_usd"], want["expected_cost"], strict=True):
        assert g == pytest.approx(w, rel=0.05)
    # Scores in the frame are the truth's Bernoulli draws: their mean tracks p_true.
    mean_score = sim["score"].mean()
    mean_truth = (
        world.truth_frame(["demo_math"], rewrite_ids=[0, 1])
        .filter(pl.col("query_id").is_in(ids))["p_true"]
        .mean()
    )
    assert abs(mean_score - mean_truth) < 0.04
