"""DROP-800: every source format, merging, the order-independent subset, the cache, and the real
files in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json

import pytest

import dars.benchmarks as B
from dars.benchmarks.base import BenchmarkDataError
from dars.benchmarks.catalog.drop import drop_query_id


def test_drop_hub_schema_rows(tmp_path, write_table):
    rows = [
        {
            "section_id": "nfl_1",
            "query_id": "q1",
            "passage": "The Bears kicked a 30-yard field goal.",
            "question": "How long was the field goal?",
            "answers_spans": {"spans": ["30", "30-yard"], "types": ["number", "span"]},
        },
        {  # same passage and question again: merged, answers united
            "section_id": "nfl_1",
            "query_id": "q2",
            "passage": "The Bears  kicked a 30-yard field goal.",
            "question": "How long was the field goal?",
            "answers_spans": {"spans": ["30 yards"], "types": ["span"]},
        },
        {
            "section_id": "nfl_1",
            "query_id": "q3",
            "passage": "The Bears kicked a 30-yard field goal.",
            "question": "Who kicked?",
            "answers_spans": {"spans": [], "types": []},  # no answer: skipped
        },
    ]
    path = write_table(rows, tmp_path / "validation.parquet")
    items = B.get("drop800").load(path=path)
    assert len(items) == 1
    it = items[0]
    assert it.gold == ("30", "30-yard", "30 yards")
    assert it.query_id == drop_query_id(rows[0]["passage"], rows[0]["question"])
    assert it.meta["source_ids"] == ["q1", "q2"]


def test_drop_answer_objects_with_validated_answers_as_columns(tmp_path):
    path = tmp_path / "drop.jsonl"
    row = {
        "passage": "In 1990 and 1994 the team won.",
        "question": "In which years did the team win?",
        "answer": {"number": "", "date": {"day": "", "month": "", "year": ""},
                   "spans": ["1990", "1994"]},
        "validated_answers": {"number": ["", ""],
                              "date": [{}, {"day": "", "month": "", "year": "1990"}],
                              "spans": [["1994", "1990"], []]},
    }  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    (it,) = B.get("drop800").load(path=path)
    assert it.gold == ("1990 | 1994", "1994 | 1990", "1990")
    assert B.get("drop800").score("Final Answer: 1994 | 1990", it).value == 1.0


def test_drop_unknown_schema_names_columns(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 1}) + "\n")
    with pytest.raises(BenchmarkDataError, match=r"unrecognised DROP columns \['label', 'text'\]"):
        B.get("drop800").load(path=path)


def test_drop_subset_is_order_independent(tmp_path, drop_dev_file):
    import gzip

    lines = gzip.open(drop_dev_file, "rt").read().splitlines()[:400]
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text("\n".join(lines) + "\n")
    b.write_text("\n".join(lines[::-1]) + "\n")
    sa = B.get("drop800", n_items=50).load(path=a)
    sb = B.get("drop800", n_items=50).load(path=b)
    assert [it.query_id for it in sa] == [it.query_id for it in sb]
    assert len(sa) == 50


def test_drop_prepare_cache_round_trip(cache_dir, drop_nested_file):
    bench = B.get("drop800", n_items=None)
    bench.prepare_cache(drop_nested_file)
    assert bench.load() == bench.load(path=drop_nested_file)


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
