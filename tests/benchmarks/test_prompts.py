"""Decode and rewrite prompts: the shared pieces, dispatch on the item's task type, and reading
the rewriter's JSON array (each task type's own prompt text: tests/benchmarks/task_types)."""

from __future__ import annotations

import json

import pytest

import dars.benchmarks as B
from dars.benchmarks import Item, parse_rewrites
from dars.benchmarks.prompts import (
    DECODE_SYSTEM,
    REWRITE_SYSTEM,
    decode_messages,
    format_choices,
    rewrite_chat,
    rewrite_messages,
)

MC = Item("m1", "Which gas do plants absorb?", "B", "mc", choices=("O2", "CO2", "N2", "He"))
MATH = Item("x1", "What is $\\frac{3}{4}$ of 20?", "15", "math")
SPAN = Item("s1", "Who won?", ("Bears",), "span", context="The Bears beat the Hawks 21-7.")


def _user(messages):
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


def test_mc_decode_lists_lettered_choices_and_asks_for_one_letter():
    text = _user(B.get("gpqa").decode_messages(MC))
    assert "A) O2\nB) CO2\nC) N2\nD) He" in text
    assert "Final Answer: X" in text and "(A, B, C or D)" in text
    rewritten = _user(decode_messages(MC, question="Plants take in which gas?"))
    assert "Plants take in which gas?" in rewritten and MC.question not in rewritten
    assert "B) CO2" in rewritten  # choices untouched by a rewrite


def test_math_and_span_decode():
    text = _user(B.get("math500").decode_messages(MATH))
    assert MATH.question in text and "Final Answer: <result>" in text and "without units" in text
    text = _user(B.get("drop800").decode_messages(SPAN, question="Which team won?"))
    assert "Passage: The Bears beat the Hawks 21-7." in text and "Which team won?" in text
    assert "' | '" in text and "Final Answer: <answer>" in text


def test_decode_checks_task_type():
    with pytest.raises(ValueError, match="not mc"):
        B.get("gpqa").decode_messages(MATH)


def test_rewrite_prompts_state_dataset_constraints():
    mc = _user(rewrite_messages(MC, 5))
    assert "only the question stem" in mc and "B) CO2" in mc and "exactly 5 strings" in mc
    math = _user(rewrite_messages(MATH, 3))
    assert "Keep every number" in math and "same quantity" in math and "exactly 3 strings" in math
    span = _user(rewrite_messages(SPAN, 2))
    assert "Passage (do not rewrite): The Bears" in span and "only the question" in span
    for msgs in (rewrite_messages(MC, 1), rewrite_messages(MATH, 1), rewrite_messages(SPAN, 1)):
        assert "correct answer stays exactly the same" in msgs[0]["content"]
    with pytest.raises(ValueError, match=">= 1"):
        rewrite_messages(MC, 0)


def test_every_task_type_shares_the_system_prompts():
    for item in (MC, MATH, SPAN):
        assert decode_messages(item)[0] == {"role": "system", "content": DECODE_SYSTEM}
        assert rewrite_messages(item, 1)[0] == {"role": "system", "content": REWRITE_SYSTEM}
    assert DECODE_SYSTEM.endswith("in the form 'Final Answer: <answer>'.")


def test_module_level_prompts_dispatch_on_the_items_task_type():
    for item, name in ((MC, "gpqa"), (MATH, "math500"), (SPAN, "drop800")):
        bench, task = B.get(name), B.get_task_type(item.task_type)
        assert decode_messages(item, "Q?") == bench.decode_messages(item, "Q?")
        assert decode_messages(item) == task.decode_messages(item)
        assert rewrite_messages(item, 3) == bench.rewrite_messages(item, 3)
        assert rewrite_messages(item, 3) == task.rewrite_messages(item, 3)


def test_rewrite_layout_and_options():
    msgs = rewrite_chat("Rules.", ["Question: q?", ""], 2)
    assert msgs[1]["content"] == (
        "Rules.\n\nQuestion: q?\n\nReturn only a JSON array of exactly 2 strings, each one "
        'complete rewritten question, for example ["…", "…"]. No other text.'
    )
    with pytest.raises(ValueError, match=">= 1"):
        rewrite_chat("Rules.", [], 0)
    assert format_choices(["x", "y", "z"]) == "A) x\nB) y\nC) z"


@pytest.mark.parametrize(
    "text",
    [
        '["a", "b", "c"]',
        '```json\n["a", "b", "c"]\n```',
        'Here you go:\n```\n[" a ", "b", "c"]\n```\nHope this helps.',
        'Sure! ["a", "b", "c", "d"]',  # extras dropped
        '["a", "", "b", "c"]',  # empty strings skipped
        '["a", "b", "c"]\nNote [1]: kept the meaning.',  # brackets after the array
    ],
)
def test_parse_rewrites_tolerant(text):
    assert parse_rewrites(text, 3) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("no array here", "no JSON array"),
        ('["a", "b"]', "2 non-empty strings, expected 3"),
        ('["a", 2, "c"]', "array element 1 is int"),
        ('["a", "b", "c"', "invalid JSON array"),
        ("[a, b, c]", "invalid JSON array"),
        ("", "no JSON array"),
    ],
)
def test_parse_rewrites_errors_say_why(text, why):
    with pytest.raises(ValueError, match="cannot read 3 rewrites") as err:
        parse_rewrites(text, 3)
    assert why in str(err.value)


def test_parse_rewrites_round_trips_json_dumps():
    rewrites = ['What is "x"?', "Line\nbreak", "Unicode: é ✓"]
    assert parse_rewrites(json.dumps(rewrites), 3) == [r.strip() for r in rewrites]
