"""Loaders and scorers on the real files in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import dars.benchmarks as B
from dars.benchmarks.mathequiv import canonical_math_string, math_equal


def test_math500_loads_500_and_gold_scores_itself(math500_file):
    bench = B.get("math500")
    items = bench.load(path=math500_file)
    assert len(items) == 500 and len({it.query_id for it in items}) == 500
    assert items[0].query_id.startswith("test/")
    split = bench.split(items)
    assert (len(split["train"]), len(split["test"])) == (200, 300)
    for template in ("Final Answer: {}", "so the answer is $\\boxed{{{}}}$."):
        bad = [it.gold for it in items if bench.score(template.format(it.gold), it).value != 1.0]
        assert bad == []


def test_math500_boxed_solution_agrees_with_answer(math500_file):
    rows = [json.loads(line) for line in math500_file.read_text().splitlines()]
    by_id = {it.query_id: it for it in B.get("math500").load(path=math500_file)}
    bench = B.get("math500")
    disagree = [
        r["unique_id"]
        for r in rows
        if bench.score(r["solution"], by_id[r["unique_id"]]).value != 1.0
    ]
    assert disagree == []


def test_math500_different_answers_are_not_equal(math500_file):
    """Negative control: each answer against the next problem's answer. Only pairs that are the
    same answer once written the same way (e.g. "5" and "x=5") may match."""
    answers = [json.loads(line)["answer"] for line in math500_file.read_text().splitlines()][:120]
    pairs = list(zip(answers, answers[1:], strict=False))
    same = [canonical_math_string(a) == canonical_math_string(b) for a, b in pairs]
    got = [math_equal(a, b) for a, b in pairs]
    assert got == same
    # the same comparisons from worker threads (math-verify in subprocesses) agree
    hard = [(a, b) for a, b in pairs if not a.strip().lstrip("-").isdigit()][:25]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(lambda p: math_equal(*p), hard))
    assert threaded == [math_equal(a, b) for a, b in hard]


def test_drop_dev_every_accepted_answer_scores_itself(drop_dev_file):
    bench = B.get("drop800", n_items=None)
    items = bench.load(path=drop_dev_file)
    assert len(items) > 8000
    n = 0
    for it in items:
        for gold in it.gold:
            assert bench.score(f"Final Answer: {gold}", it).value == 1.0, (it.query_id, gold)
            n += 1
    assert n > len(items)  # validated answers kept, not only the first


def test_drop800_subset_and_split(drop_dev_file):
    items = B.get("drop800").load(path=drop_dev_file)
    assert len(items) == 800
    split = B.get("drop800").split(items)
    assert (len(split["train"]), len(split["test"])) == (200, 600)


def test_drop_nested_fixture(drop_nested_file):
    bench = B.get("drop800")
    items = bench.load(path=drop_nested_file)
    raw = json.loads(drop_nested_file.read_text())
    n_questions = sum(len(p["qa_pairs"]) for p in raw.values())
    assert 0 < len(items) <= n_questions
    for it in items:
        assert it.context and it.gold
        for gold in it.gold:
            assert bench.score(f"Final Answer: {gold}", it).value == 1.0
