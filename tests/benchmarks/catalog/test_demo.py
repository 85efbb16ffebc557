"""The generated demo benchmarks: deterministic, well-formed, and their gold verified by scorers."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

import dars.benchmarks as B
from dars.benchmarks.catalog.demo import frac_latex

DEMOS = ("demo_mc", "demo_math", "demo_span")


@pytest.fixture(scope="module")
def demo_items():
    return {name: B.get(name).load() for name in DEMOS}


@pytest.mark.parametrize("name", DEMOS)
def test_deterministic_prefix_stable_and_seeded(name, demo_items):
    items = demo_items[name]
    assert len(items) == 100
    assert B.get(name).load() == items
    assert [it.meta for it in B.get(name).load()] == [it.meta for it in items]
    assert B.get(name, n_items=30).load() == items[:30]  # more items never change earlier ones
    other = B.get(name, seed=1, n_items=30).load()
    assert [it.question for it in other] != [it.question for it in items[:30]]
    assert len({it.query_id for it in items}) == 100
    assert all(it.task_type == B.get(name).task_type for it in items)
    assert all(0.0 <= it.meta["difficulty"] <= 1.0 for it in items)
    assert len({it.meta["template"] for it in items}) >= 3


@pytest.mark.parametrize("name", DEMOS)
def test_default_split_is_50_50(name, demo_items):
    split = B.get(name).split(demo_items[name], n_train=50)
    assert (len(split["train"]), len(split["test"])) == (50, 50)


def test_mc_items_have_four_distinct_options_and_scored_gold(demo_items):
    bench = B.get("demo_mc")
    for it in demo_items["demo_mc"]:
        assert len(it.choices) == 4 and len(set(it.choices)) == 4, it
        assert bench.score(f"Final Answer: {it.gold}", it).value == 1.0
        wrong = next(letter for letter in "ABCD" if letter != it.gold)
        assert bench.score(f"Final Answer: {wrong}", it).value == 0.0


def _check_mc_gold(it):
    """Recompute the correct option from the question text for the templates where that is easy."""
    q, correct = it.question, it.choices["ABCD".index(it.gold)]
    if m := re.fullmatch(r"What is (\d+) × (\d+)\?", q):
        return int(correct) == int(m[1]) * int(m[2])
    if m := re.fullmatch(r"What is the remainder when (\d+) is divided by (\d+)\?", q):
        return int(correct) == int(m[1]) % int(m[2])
    if q.startswith("Which of the following fractions is the"):
        vals = {c: Fraction(c) for c in it.choices}
        pick = max if "largest" in q else min
        return vals[correct] == pick(vals.values())
    if q == "Which of the following numbers is prime?":

        def prime(n):
            return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))

        return prime(int(correct)) and not any(prime(int(c)) for c in it.choices if c != correct)
    return None


def test_mc_gold_recomputed_independently(demo_items):
    checked = [r for it in demo_items["demo_mc"] if (r := _check_mc_gold(it)) is not None]
    assert len(checked) >= 20 and all(checked)


def test_math_gold_scores_and_near_miss_fails(demo_items):
    bench = B.get("demo_math")
    for it in demo_items["demo_math"]:
        assert re.fullmatch(r"-?\d+|-?\\frac\{\d+\}\{\d+\}", it.gold), it.gold
        assert bench.score(f"Work.\nFinal Answer: {it.gold}", it).value == 1.0
        assert bench.score(f"Final Answer: \\boxed{{{it.gold}}}", it).value == 1.0
        m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", it.gold)
        value = Fraction(int(m[2]), int(m[3])) * (-1 if m[1] else 1) if m else Fraction(it.gold)
        assert bench.score(f"Final Answer: {frac_latex(value + 1)}", it).value == 0.0


def test_math_gold_recomputed_for_linear_equations(demo_items):
    n = 0
    for it in demo_items["demo_math"]:
        if m := re.fullmatch(r"Solve for \$x\$: \$(\d+)x ([+-]) (\d+) = (-?\d+)\$\.", it.question):
            a, sign, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            b = b if sign == "+" else -b
            assert it.gold == frac_latex(Fraction(c - b, a))
            n += 1
    assert n >= 3


def test_span_gold_scores_and_numbers_appear_consistent(demo_items):
    bench = B.get("demo_span")
    kinds = set()
    for it in demo_items["demo_span"]:
        kinds.add(it.meta["kind"])
        assert it.context and isinstance(it.gold, tuple) and it.gold
        for g in it.gold:
            assert bench.score(f"Final Answer: {g}", it).value == 1.0
        if it.meta["kind"] == "span":  # a span answer is copied from the passage
            assert any(g.lower().removeprefix("the ") in it.context.lower() for g in it.gold)
    assert {"count", "arithmetic", "span"} <= kinds


def test_inventory_arithmetic_recomputed(demo_items):
    n = 0
    for it in demo_items["demo_span"]:
        m = re.fullmatch(r"How many crates of (\w+) were left at the end\?", it.question)
        if not m:
            continue
        good = m[1]
        stock = int(re.search(rf"(\d+) crates of {good}", it.context)[1])
        for k in re.findall(rf"On \w+, (\d+) crates of {good} were shipped", it.context):
            stock -= int(k)
        for k in re.findall(rf"a delivery of (\d+) crates of {good} arrived", it.context):
            stock += int(k)
        assert it.gold == (str(stock),)
        n += 1
    assert n >= 3


def test_demo_takes_no_path_and_validates_options():
    with pytest.raises(ValueError, match="takes no path"):
        B.get("demo_mc").load(path="x.jsonl")
    with pytest.raises(ValueError, match="n_items must be a positive integer"):
        B.get("demo_math", n_items=0).load()
