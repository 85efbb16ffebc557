"""Registry, options, splits and the Item record round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dars.benchmarks as B
from dars.benchmarks.base import Item, register_benchmark, split_items
from dars.benchmarks.families import MathBenchmark


def test_all_benchmarks_registered_with_task_types():
    assert B.available() == [
        "demo_math", "demo_mc", "demo_span", "drop800", "gpqa", "jsonl", "math500", "parquet",
    ]  # fmt: skip
    assert {n: B.get(n).task_type for n in ("gpqa", "math500", "drop800")} == {
        "gpqa": "mc",
        "math500": "math",
        "drop800": "span",
    }
    assert {B.get(n).name for n in ("jsonl", "parquet")} == {"jsonl", "parquet"}


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError, match="available: demo_math, demo_mc"):
        B.get("gqpa")


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark("math500")(MathBenchmark)


def test_unknown_option_rejected_with_valid_options():
    with pytest.raises(ValueError, match="valid options: n_items, seed"):
        B.get("demo_mc", n_itmes=5)
    with pytest.raises(ValueError, match="valid options: none"):
        B.get("math500", foo=1)
    with pytest.raises(ValueError, match="allowed values: gpqa_main"):
        B.get("gpqa", config="gpqa_mian")


def test_module_level_score_uses_the_item():
    item = Item(query_id="q", question="?", gold="B", task_type="mc", choices=("x", "y", "z", "w"))
    assert B.score("gpqa", "Final Answer: B", item).value == 1.0
    assert B.score("gpqa", "Final Answer: C", item).value == 0.0


def _items(ids):
    return [Item(query_id=i, question=f"q{i}", gold="1", task_type="math") for i in ids]


@settings(max_examples=50, deadline=None)
@given(st.permutations([f"id{i}" for i in range(30)]), st.integers(0, 3))
def test_split_depends_on_ids_and_seed_not_order(perm, seed):
    ref = split_items(_items(sorted(perm)), n_train=10, seed=seed)
    got = split_items(_items(perm), n_train=10, seed=seed)
    assert [it.query_id for it in got["train"]] == [it.query_id for it in ref["train"]]
    assert [it.query_id for it in got["test"]] == [it.query_id for it in ref["test"]]
    assert len(got["train"]) == 10 and len(got["test"]) == 20


def test_split_sizes_and_errors():
    items = _items([f"x{i}" for i in range(12)])
    s = split_items(items, n_train=5, n_test=4)
    assert (len(s["train"]), len(s["test"])) == (5, 4)
    assert not {i.query_id for i in s["train"]} & {i.query_id for i in s["test"]}
    with pytest.raises(ValueError, match="fewer than n_train"):
        split_items(items, n_train=13)
    with pytest.raises(ValueError, match="duplicate query_id"):
        split_items(items + items[:1], n_train=2)


@pytest.mark.parametrize(
    "item",
    [
        Item("a", "q?", "C", "mc", choices=("1", "2", "3", "4"), meta={"domain": "Physics"}),
        Item("b", "q?", "\\frac{1}{2}", "math", meta={"level": 3}),
        Item("c", "q?", ("3", "three | 3"), "span", context="passage"),
    ],
)
def test_item_record_round_trip(item):
    rec = item.to_record()
    assert isinstance(rec["gold"], str) and isinstance(rec["meta"], str)
    back = Item.from_record(rec)
    assert back == item and back.meta == item.meta
