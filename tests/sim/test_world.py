"""The simulated world (``dars.sim.world``): determinism, the responses of the simulator before
it asked the task types, agreement with the real scorers, a task type it has no settings for,
ground truth, expected costs."""

from __future__ import annotations

import hashlib
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
from dars.benchmarks.base import (
    Benchmark,
    Item,
    Score,
    TaskType,
    register_benchmark,
    register_task_type,
)
from dars.benchmarks.parsing import FINAL_LINE
from dars.benchmarks.prompts import decode_chat, rewrite_chat
from dars.llm.types import CallKey
from dars.sim import GENERIC_PROFILE, SimError, SimWorld, sim_world, simulated_truth
from tests.simstore import sim_experiment

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


# -- the simulator before it asked the task types ------------------------------------------------

# sha256 digests of what the simulator answered at d3d986f (before its answers came from the task
# types' hooks), computed once with the recipe of _reference_digests: per dataset, for the default
# world and noisy_world(0.1), (responses and outcomes of 20 items x 6 models x 3 keys, the truth
# frame's rows with floats to 12 significant digits).
REFERENCE = {
    "demo_mc": (
        "ed0c76efc6e05b232dcb194c976c61d5ddd66557e9102734ee8b34ddf403e272",
        "430f1c8eb39226922c4303e7d26449d2efdf627654f960b923607f8a7d8ffa1c",
        "6859afba6d281edc31a5598b10d4aedad51b9995491d4dcff3c606aa06686c23",
        "53e898d3d997429d762953115f33aa7292e2dd3a62076488e014156c25df7f3a",
    ),
    "demo_math": (
        "ff5c2b8a2bb4345656840aaa58c6ebc74ed58a904e0f99d4902613af731d53be",
        "521e5bcac4afeb0bedfe1c06277d92cd44cd1d818b97360a46e33927151c73e6",
        "1058a20123fe60b0515490fabfa6546b87d416ed0c0d4119227ed89f404386d4",
        "27e6ec12e9d9815473a7a11235e570d6a57fd1dbf052e3a29a4f957c49e7cb4c",
    ),
    "demo_span": (
        "f525658ff3197fe96571d192f090a412463c1e335a39be8805ea9bdb1dd4223c",
        "419cc4ccbe711208c68fa7d0608e22a92dcee941521619f3dfba7b7fbb6cf91a",
        "46731d71d7c637b4ecf408874a9d996999790608a111171353595d6727ae9d81",
        "000ae2feb7ef6fc57148d1ec2730b5a23bb19bbe380a549e28e19caee4cf66c4",
    ),
}


def _reference_digests(name: str, bench: B.Benchmark, items: list[Item]) -> tuple[str, ...]:
    out: list[str] = []
    for world in (SimWorld(), noisy_world(0.1)):
        world.register_items(name, items)
        h = hashlib.sha256()
        for item in items[:20]:
            for m in sorted(world.models):
                for r, d in ((-1, 0), (0, 1), (2, 3)):
                    key = CallKey(name, "train", item.query_id, m, r, d)
                    kind, target = world.outcome(key, m)
                    msgs = bench.decode_messages(item)
                    text, pt, ct = world.respond(f"dars-sim/{m}", msgs, 768, key)
                    h.update(f"{kind}|{target}|{pt}|{ct}|{text}\x1e".encode())
        truth = world.truth_frame([name], rewrite_ids=[-1, 0, 1]).rows()
        # 12 digits: the digest must not depend on the last bits of the platform's exp().
        rows = [tuple(f"{v:.12g}" if isinstance(v, float) else v for v in row) for row in truth]
        out += [h.hexdigest(), hashlib.sha256(repr(rows).encode()).hexdigest()]
    return tuple(out)


@pytest.mark.parametrize("name", DEMOS)
def test_responses_and_truth_are_those_of_the_simulator_before_the_task_type_hooks(
    demo, name: str
) -> None:
    bench, items = demo[name]
    assert _reference_digests(name, bench, items) == REFERENCE[name]


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


# -- a task type the simulator has no settings for ----------------------------------------------


class Grade(TaskType):
    """A toy task type registered at test time: the gold is a whole number, an answer one off
    earns half credit, and responses end with the task type's own final line ``Grade: <n>``."""

    name = "grade"
    binary_scores = False

    def decode_messages(self, item, question=None):
        q = question if question is not None else item.question
        return decode_chat(f"Give a whole number.\n\nQuestion: {q}\n\nEnd with 'Grade: <n>'.")

    def rewrite_messages(self, item, n):
        return rewrite_chat("Rewrite the question.", [f"Question: {item.question}", ""], n)

    def score_answer(self, response, gold, *, choices=None):
        found = re.findall(r"(?m)^Grade: (-?\d+)$", response or "")
        if not found:
            return Score(0.0, None, False)
        off = abs(int(found[-1]) - int(gold))
        return Score(1.0 if off == 0 else 0.5 if off == 1 else 0.0, found[-1], True)

    def final_line(self, answer):
        return f"Grade: {answer}"

    def wrong_answer(self, item, u):
        return str(int(item.gold) + 5 + int(u * 3))

    def partial_answer(self, item):
        return str(int(item.gold) + 1), 0.5


class ToyGrades(Benchmark):
    """What is i times 3? for i = 0 … n_items - 1."""

    task_type = "grade"
    default_options = {"n_items": 6}

    def load(self, path=None, *, cache_dir=None):
        n = self.options["n_items"]
        return [Item(f"g-{i}", f"What is {i} times 3?", str(3 * i), "grade") for i in range(n)]


def test_a_task_type_registered_at_test_time_is_simulated(
    scratch_registries, tmp_path, intended_score
) -> None:
    register_task_type(Grade())
    register_benchmark("toy_grades")(ToyGrades)
    bench = B.get("toy_grades", n_items=6)
    items = bench.load()
    world = noisy_world(0.1)  # no profile, no ability for "grade": the generic defaults
    assert world.profile("grade") is GENERIC_PROFILE
    world.register_items("toy_grades", items)
    kinds: set[str] = set()
    for item in items:
        for m in world.models:
            for d in range(12):
                key = CallKey("toy_grades", "train", item.query_id, m, 0, d)
                kind = world.outcome(key, m)[0]
                text = world.respond(f"dars-sim/{m}", bench.decode_messages(item), 512, key)[0]
                score = bench.score(text, item)
                kinds.add(kind)
                assert FINAL_LINE not in text, text
                assert score.value == intended_score(world, "toy_grades", item, kind), text
                assert score.parse_ok == (kind != "unparseable"), text
                if kind != "unparseable":
                    assert text.splitlines()[-1] == f"Grade: {score.parsed}"
    assert kinds == {"correct", "partial", "wrong", "unparseable"}

    # Ground truth: the partial answer's score enters p_true with the generic partial rate.
    item = items[2]
    p = world.p_correct("toy_grades", item.query_id, "mid", 0)
    expected = (1 - 0.1) * (p + (1 - p) * GENERIC_PROFILE.partial_rate * 0.5)
    assert world.true_expected_score("toy_grades", item.query_id, "mid", 0) == expected
    exp = sim_experiment(tmp_path, benchmark="toy_grades", n_train=4, n_items=6, models=2)
    truth = simulated_truth(exp, "toy_grades", world=SimWorld())
    assert truth.height == 4 * 2 and truth["p_true"].is_between(0, 1, closed="none").all()
    assert (truth["expected_cost_usd"] > 0).all()


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
