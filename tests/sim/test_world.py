"""The simulated world (``dars.sim.world``): determinism, agreement with the real scorers,
ground truth, expected costs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from dars.benchmarks.base import Item
from dars.llm.types import CallKey
from dars.sim import SimError, SimWorld, sim_world

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ("demo_mc", "demo_math", "demo_span")


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


# -- determinism -------------------------------------------------------------------------------

_CHILD = """
import hashlib, json, sys
import dars.benchmarks as B
from dars.llm.types import CallKey
from dars.sim import SimWorld
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
assert "litellm" not in sys.modules  # the world answers without litellm
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


def test_every_simulated_response_scores_as_intended(demo, intended_score) -> None:
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
def test_hand_made_items_score_as_intended(task: str, gold, extra: dict, intended_score) -> None:
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


# -- the simulated rewriter and costs ----------------------------------------------------------


def test_rewriter_needs_n(demo) -> None:
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
