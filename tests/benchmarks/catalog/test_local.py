"""The user-file benchmark (``jsonl`` / ``parquet``): schema, inference, errors."""

from __future__ import annotations

import json

import polars as pl
import pytest

import dars.benchmarks as B
from dars.benchmarks.base import BenchmarkDataError, BenchmarkUnavailableError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mc_rows_letter_or_choice_text(tmp_path):
    path = _jsonl(
        tmp_path / "mc.jsonl",
        [
            {"query_id": "q1", "question": "2+2?", "choices": ["3", "4", "5"], "answer": "b"},
            {"question": "Capital of France?", "choices": ["Rome", "Paris"], "answer": "Paris"},
        ],
    )
    bench = B.get("jsonl")
    items = bench.load(path=path)
    assert bench.task_type == "mc"
    assert [it.gold for it in items] == ["B", "B"]
    assert items[0].query_id == "q1" and items[1].query_id.startswith("local-")
    assert bench.score("Final Answer: B", items[1]).value == 1.0
    assert bench.score_answer("Final Answer: A", "B").value == 0.0


def test_task_type_inference(tmp_path):
    math = B.get("jsonl")
    items = math.load(path=_jsonl(tmp_path / "m.jsonl", [{"question": "1/2+1/4?", "answer": 0.75}]))
    assert (items[0].task_type, items[0].gold) == ("math", "0.75")
    span = B.get("jsonl")
    rows = [
        {"question": "Who won?", "context": "The Bears beat the Hawks.", "answer": "Bears"},
        {"question": "Teams?", "answers": ["Bears | Hawks", "the Bears | the Hawks"]},
    ]
    items = span.load(path=_jsonl(tmp_path / "s.jsonl", rows))
    assert [it.task_type for it in items] == ["span", "span"]
    assert items[0].gold == ("Bears",) and items[1].gold == (
        "Bears | Hawks",
        "the Bears | the Hawks",
    )
    assert span.score_answer("Final Answer: Hawks | Bears", items[1].gold).value == 1.0


def test_parquet_file_with_list_columns(tmp_path):
    path = tmp_path / "own.parquet"
    pl.DataFrame(
        {
            "query_id": ["a", "b"],
            "question": ["Pick the even number.", "Pick the prime."],
            "choices": [["3", "8", "9"], ["4", "6", "7"]],
            "answer": ["B", "7"],
            "source": ["x", "y"],
        }
    ).write_parquet(path)
    bench = B.get("parquet")
    items = bench.load(path=path)
    assert [(it.gold, it.choices) for it in items] == [
        ("B", ("3", "8", "9")),
        ("C", ("4", "6", "7")),
    ]
    assert items[0].meta == {"source": "x"}
    assert bench.name == "parquet"


@pytest.mark.parametrize(
    ("rows", "bad_row", "field"),
    [
        ([{"question": "ok", "answer": "1"}, {"question": "", "answer": "1"}], 2, "question"),
        ([{"question": "q"}], 1, "answer"),
        ([{"question": "q", "choices": ["a", "b"], "answer": "C"}], 1, "answer"),
        ([{"question": "q", "choices": ["a"], "answer": "A"}], 1, "choices"),
        ([{"question": "q", "answer": "1", "task_type": "essay"}], 1, "task_type"),
        ([{"question": "q", "answer": "1", "answers": ["1"]}], 1, "answers"),
        ([{"question": "q", "answers": ["1", "2"], "task_type": "math"}], 1, "answers"),
        ([{"question": "q", "answer": "1", "task_type": "mc"}], 1, "choices"),
        ([{"question": "q", "context": 5, "answer": "1"}], 1, "context"),
        ([{"question": "a", "answer": "1"},
          {"question": "b", "choices": ["x", "y"], "answer": "A"}], 2, "task_type"),
        ([{"query_id": "d", "question": "a", "answer": "1"},
          {"query_id": "d", "question": "b", "answer": "2"}], 2, "query_id"),
    ],
)  # fmt: skip
def test_bad_rows_name_file_row_and_field(tmp_path, rows, bad_row, field):
    path = _jsonl(tmp_path / "user.jsonl", rows)
    with pytest.raises(BenchmarkDataError, match=rf"user\.jsonl: row {bad_row}: field '{field}'"):
        B.get("jsonl").load(path=path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"answer": "A", "task_type": "mc"}, "field 'choices' is required for task_type 'mc'"),
        ({"answer": "1", "choices": ["a", "b"], "task_type": "math"},
         "field 'choices' is only allowed for task_type 'mc'"),
        ({"answers": ["1"], "choices": ["a", "b"], "task_type": "span"},
         "field 'choices' is only allowed for task_type 'mc'"),
        ({"answers": ["A", "B"], "choices": ["a", "b"]},
         "field 'answers' must hold exactly one answer for task_type 'mc'"),
        ({"answers": ["1", "2"], "task_type": "math"},
         "field 'answers' must hold exactly one answer for task_type 'math'"),
        ({"answer": "C", "choices": ["a", "b"]},
         "field 'answer' is 'C': neither a letter in AB nor one of the choices"),
        ({"answers": ["c"], "choices": ["a", "b"]},
         "field 'answers' is 'c': neither a letter in AB nor one of the choices"),
        ({"answer": "1", "task_type": "essay"},
         "field 'task_type' is 'essay'; allowed values: math, mc, span"),
    ],
)  # fmt: skip
def test_task_type_rules_for_rows(tmp_path, row, message):
    """What each task type accepts (options, how many answers, how an answer becomes the gold),
    with messages naming the file, the row and the field."""
    path = _jsonl(tmp_path / "user.jsonl", [{"question": "q", **row}])
    with pytest.raises(BenchmarkDataError) as err:
        B.get("jsonl").load(path=path)
    assert str(err.value) == f"{path}: row 1: {message}"


def test_row_numbers_are_file_lines(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b"}\n')
    with pytest.raises(BenchmarkDataError, match="row 3: field 'answer'"):
        B.get("jsonl").load(path=path)
    path.write_text('{"question": "a", "answer": "1"}\n{not json}\n')
    with pytest.raises(BenchmarkDataError, match=r"gaps\.jsonl: line 2: invalid JSON"):
        B.get("jsonl").load(path=path)


def test_path_is_required_and_task_type_option(tmp_path):
    with pytest.raises(BenchmarkUnavailableError, match="pass path="):
        B.get("jsonl").load()
    with pytest.raises(ValueError, match="allowed values: math, mc, span"):
        B.get("jsonl", task_type="essay")
    bench = B.get("jsonl", task_type="span")
    items = bench.load(path=_jsonl(tmp_path / "f.jsonl", [{"question": "q", "answer": "7"}]))
    assert items[0].task_type == "span" and items[0].gold == ("7",)
    with pytest.raises(ValueError, match="task type unknown before load"):
        B.get("jsonl").score_answer("Final Answer: 1", "1")
