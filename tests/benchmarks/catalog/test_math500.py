"""MATH-500: the loader on hand-made rows, the cache, and the real file in ../shared/data
(skipped when absent): every gold scores itself, boxed solutions agree, different answers differ."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import dars.benchmarks as B
from dars.benchmarks.base import BenchmarkDataError
from dars.benchmarks.mathequiv import canonical_math_string, math_equal


def test_math500_loader_and_hash_ids(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"problem": "What is $1+1$?", "answer": "2", "unique_id": "test/a/1.json"})
        + "\n\n"
        + json.dumps({"problem": "What is $2+2$?", "answer": 4, "level": 1})
        + "\n"
    )
    items = B.get("math500").load(path=path)
    assert items[0].query_id == "test/a/1.json" and items[0].gold == "2"
    assert items[1].query_id.startswith("math-") and items[1].gold == "4"
    assert items[1].meta == {"level": 1}
    path.write_text(
        json.dumps({"problem": "x", "answer": "1"}) + "\n" + json.dumps({"problem": ""})
    )
    with pytest.raises(BenchmarkDataError, match=r"m\.jsonl: row 2: field 'problem'"):
        B.get("math500").load(path=path)


def test_prepare_cache_then_load_offline(cache_dir, math500_file):
    bench = B.get("math500")
    dest = bench.prepare_cache(math500_file)
    assert dest == cache_dir / "math500.parquet" and dest.is_file()
    from_cache = bench.load()
    assert from_cache == bench.load(path=math500_file)


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
