"""The benchmark and task-type registries (built-ins, plugins registered at test time, entry
points), options, splits and the Item record round trip."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dars.benchmarks as B
from dars.benchmarks import base
from dars.benchmarks.base import (
    Benchmark,
    Item,
    Score,
    TaskType,
    register_benchmark,
    split_items,
)
from dars.benchmarks.catalog.math500 import Math500
from dars.benchmarks.parsing import FINAL_LINE, extract_final_answer
from dars.benchmarks.prompts import DECODE_SYSTEM, REWRITE_SYSTEM, decode_chat, rewrite_chat
from dars.benchmarks.rewrite_checks import check_rewrites
from dars.benchmarks.scoring import score_by_task
from dars.benchmarks.validity import scoring_validity
from dars.config import BenchmarkSpec
from dars.registry import Registry


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


def test_built_in_task_types_and_their_declared_properties():
    assert B.TASK_TYPES.names() == ["math", "mc", "span"]
    props = {
        n: (t.name, t.binary_scores, t.has_choices, t.several_answers)
        for n, t in B.TASK_TYPES.items()
    }
    assert props == {
        "mc": ("mc", True, True, False),
        "math": ("math", True, False, False),
        "span": ("span", False, False, True),
    }


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError, match="available: demo_math, demo_mc"):
        B.get("gqpa")
    with pytest.raises(ValueError, match="unknown task type 'essay'; available: math, mc, span"):
        B.get_task_type("essay")


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark("math500")(Math500)
    with pytest.raises(ValueError, match="already registered"):
        B.register_task_type(type(B.get_task_type("mc"))())


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


# ------------------------------------------------------------------------------------------------
# plugins: a new task type is one module, a new benchmark of it one more; nothing else changes


class YesNo(TaskType):
    """A toy task type: the gold is "yes" or "no"."""

    name = "yesno"

    def decode_messages(self, item, question=None):
        self.check_item(item)
        q = question if question is not None else item.question
        return decode_chat(f"Answer yes or no.\n\nQuestion: {q}\n\nEnd with '{FINAL_LINE} yes|no'.")

    def rewrite_messages(self, item, n):
        self.check_item(item)
        return rewrite_chat("Rewrite the yes/no question.", [f"Question: {item.question}", ""], n)

    def score_answer(self, response, gold, *, choices=None):
        answer = extract_final_answer(response or "")
        if answer is None or answer.lower() not in ("yes", "no"):
            return Score(0.0, answer, False)
        return Score(float(answer.lower() == gold), answer.lower(), True)

    def rewrite_structure_ok(self, item, rewrite):
        return rewrite.rstrip().endswith("?")

    def wrong_answer(self, item, u):
        return "no" if item.gold == "yes" else "yes"


class ToyYesNo(Benchmark):
    """Is i even? for i = 0 … n_items - 1."""

    task_type = "yesno"
    default_options = {"n_items": 3}

    def load(self, path=None, *, cache_dir=None):
        return [
            Item(f"yn-{i}", f"Is {i} even?", "no" if i % 2 else "yes", "yesno")
            for i in range(self.options["n_items"])
        ]


def test_a_toy_task_type_and_benchmark_run_through_the_public_api(scratch_registries, tmp_path):
    B.register_task_type(YesNo())
    register_benchmark("toy_yesno")(ToyYesNo)
    assert "yesno" in B.TASK_TYPES.names() and "toy_yesno" in B.available()
    assert BenchmarkSpec(name="toy_yesno").name == "toy_yesno"  # configs accept it

    bench = B.get("toy_yesno", n_items=4)
    items = bench.load()
    item = items[1]
    # prompts: the benchmark, the module-level dispatch and the shared system prompts
    msgs = bench.decode_messages(item)
    assert msgs == B.decode_messages(item)
    assert msgs[0]["content"] == DECODE_SYSTEM and "Question: Is 1 even?" in msgs[1]["content"]
    assert (
        "Question: Even or odd: 1?" in bench.decode_messages(item, "Even or odd: 1?")[1]["content"]
    )
    rewrite = B.rewrite_messages(item, 2)
    assert rewrite == bench.rewrite_messages(item, 2) and rewrite[0]["content"] == REWRITE_SYSTEM
    assert rewrite[1]["content"].startswith("Rewrite the yes/no question.\n\nQuestion: Is 1 even?")
    assert "exactly 2 strings" in rewrite[1]["content"]
    with pytest.raises(ValueError, match="has task_type 'mc', not yesno"):
        bench.decode_messages(Item("m", "?", "A", "mc", choices=("x", "y")))
    # scoring: the benchmark, the module-level scorer and the dispatch by task type name
    assert bench.score("Thinking.\nFinal Answer: No.", item) == Score(1.0, "no", True)
    assert B.score("toy_yesno", "Final Answer: yes", item).value == 0.0
    assert score_by_task("yesno", "Final Answer: maybe", "no").parse_ok is False
    # rewrite checks (the toy's structure rule) and the scoring validity report (binary scores)
    rows = check_rewrites(item, ["Is the number 1 even?", "Tell me whether 1 is even."])
    assert [r["struct_ok"] for r in rows] == [True, False]
    obs = pl.DataFrame(
        {
            "dataset": "toy_yesno", "split": "test", "query_id": ["yn-1", "yn-2"], "model": "m",
            "rewrite_id": -1, "decode_id": 0, "response": ["Final Answer: no", "Final Answer: no"],
            "parse_ok": True, "score": [1.0, 0.5],
        }
    )  # fmt: skip
    report = scoring_validity(obs, {"toy_yesno": items}).row(0, named=True)
    assert report["score_type"] == 0.5 and report["rescore_diffs"] == 1
    # a user's file of the new task type
    path = tmp_path / "yn.jsonl"
    path.write_text('{"question": "Is 7 prime?", "answer": "yes", "task_type": "yesno"}\n')
    local = B.get("jsonl")
    (row,) = local.load(path=path)
    assert (row.task_type, row.gold, local.task_type) == ("yesno", "yes", "yesno")
    assert local.score("Final Answer: yes", row).value == 1.0
    # what the simulated pool would write
    toy = B.get_task_type("yesno")
    assert toy.final_line(toy.wrong_answer(item, 0.3)) == "Final Answer: yes"
    assert bench.score(toy.final_line(toy.gold_text(item)), item).value == 1.0


def test_items_of_an_unknown_task_type_are_named():
    item = Item("q9", "?", "x", "essay")
    with pytest.raises(ValueError, match="item 'q9': unknown task type 'essay'; available: "):
        B.decode_messages(item)
    with pytest.raises(ValueError, match="unknown task type 'essay'"):
        check_rewrites(item, ["a?"])


_PLUGIN = """
from dars.benchmarks import Benchmark, Item, Score, TaskType
from dars.benchmarks.prompts import decode_chat, rewrite_chat


class Echo(TaskType):
    name = "echo"

    def decode_messages(self, item, question=None):
        self.check_item(item)
        return decode_chat(f"Repeat: {question or item.question}")

    def rewrite_messages(self, item, n):
        return rewrite_chat("Rewrite.", [f"Question: {item.question}", ""], n)

    def score_answer(self, response, gold, *, choices=None):
        return Score(float(response.strip() == gold), response.strip(), True)

    def wrong_answer(self, item, u):
        return item.gold + "!"


ECHO = Echo()  # not registered here: the entry point names the object


class EchoBench(Benchmark):
    task_type = "echo"

    def load(self, path=None, *, cache_dir=None):
        return [Item("e1", "hello", "hello", "echo")]
"""


def test_third_party_plugins_come_from_entry_points(monkeypatch, tmp_path):
    """A package declaring ``[project.entry-points."dars.task_types"] echo = "pkg:ECHO"`` and
    ``[project.entry-points."dars.benchmarks"] echo_bench = "pkg:EchoBench"``: both are found
    by name, without editing dars (fresh registries, so the built-ins stay as they are)."""
    (tmp_path / "dars_echo_plugin.py").write_text(_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "dars_echo_plugin", raising=False)
    assert (B.TASK_TYPES.group, B.BENCHMARKS.group) == ("dars.task_types", "dars.benchmarks")
    eps = {
        "dars.task_types": [EntryPoint("echo", "dars_echo_plugin:ECHO", "dars.task_types")],
        "dars.benchmarks": [
            EntryPoint("echo_bench", "dars_echo_plugin:EchoBench", "dars.benchmarks")
        ],
    }
    monkeypatch.setattr("dars.registry.entry_points", lambda group: eps.get(group, []))
    for attr in ("TASK_TYPES", "BENCHMARKS"):
        real = getattr(base, attr)
        fresh = Registry(real.kind, real.base, instances=real.instances, group=real.group)
        monkeypatch.setattr(base, attr, fresh)

    assert B.available() == ["echo_bench"]
    bench = B.get("echo_bench")
    (item,) = bench.load()
    assert bench.decode_messages(item)[1]["content"] == "Repeat: hello"
    assert B.decode_messages(item) == bench.decode_messages(item)
    assert bench.score("hello", item).value == 1.0 and bench.score("bye", item).value == 0.0
    assert B.get_task_type("echo").name == "echo"
