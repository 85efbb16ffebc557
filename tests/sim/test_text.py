"""What the simulated pool writes (``dars.sim.text``), checked on hand-made items against the
benchmark scorers: every wrong answer scores 0, every partial answer strictly between 0 and 1,
every unparseable ending fails to parse; paraphrases keep the question's numbers."""

from __future__ import annotations

import itertools
import re

import pytest

from dars.benchmarks.base import Item
from dars.benchmarks.dropf1 import drop_max_em_f1
from dars.benchmarks.scoring import score_by_task
from dars.sim.text import (
    WRONG_SPAN_VARIANTS,
    ending,
    gold_text,
    pad_reasoning,
    paraphrases,
    partial_answer,
    unparseable_ending,
    wrong_math,
    wrong_span,
)

SPAN = Item(
    query_id="s1",
    question="How many touchdowns did Brady throw?",
    gold=("3", "three"),
    task_type="span",
    context="Tom Brady threw 3 touchdown passes to Gronkowski in the fourth quarter.",
)
MC = Item(query_id="m1", question="Pick one.", gold="C", task_type="mc", choices=("a", "b", "c"))


def fixed_u(*parts: object) -> float:
    """A deterministic stand-in for the world's uniform draw."""
    return (sum(map(ord, "|".join(map(str, parts)))) % 997 + 0.5) / 997


def test_gold_text_is_a_span_items_first_gold() -> None:
    assert gold_text(SPAN) == "3" and gold_text(MC) == "C"
    assert gold_text(Item(query_id="x", question="?", gold="a | b", task_type="span")) == "a | b"


@pytest.mark.parametrize("gold", ["42", "-7", "1,024", "0", "0.25", "\\frac{1}{2}", "(1, 2)"])
def test_wrong_math_answers_score_zero(gold: str) -> None:
    for u in (0.0, 0.2, 0.4, 0.6, 0.8, 0.99):
        wrong = wrong_math(gold, u)
        assert wrong != gold
        assert score_by_task("math", f"Final Answer: {wrong}", gold).value == 0.0, wrong


def test_wrong_span_answers_score_zero_and_partial_scores_in_between() -> None:
    wrongs = {wrong_span(SPAN, b) for b in range(WRONG_SPAN_VARIANTS)}
    assert len(wrongs) > 1  # the buckets give different answers
    for w in wrongs:
        assert drop_max_em_f1(w, list(SPAN.gold))[1] == 0.0, w
    answer, f1 = partial_answer(SPAN)
    assert answer is not None and answer.startswith("3 ")
    assert 0.0 < f1 < 1.0 and drop_max_em_f1(answer, list(SPAN.gold))[1] == f1
    assert partial_answer(MC) == (None, 0.0)  # only span items earn partial credit


def test_endings_give_the_intended_answer() -> None:
    def never() -> str:
        raise AssertionError("not a span item: no span answer is needed")

    right = ending(MC, "correct", 0.3, partial=never, wrong_span=never)
    assert right.endswith("Final Answer: C")
    wrong = {ending(MC, "wrong", u, partial=never, wrong_span=never)[-1] for u in (0.1, 0.9)}
    assert wrong == {"A", "B"}  # the draw picks among the other letters
    partial = ending(SPAN, "partial", 0.5, partial=lambda: "3 passes", wrong_span=never)
    assert partial.endswith("Final Answer: 3 passes")
    none = ending(SPAN, "partial", 0.5, partial=lambda: None, wrong_span=never)
    assert none.endswith("Final Answer: 3")  # no partial answer: the gold
    assert ending(SPAN, "wrong", 0.5, partial=never, wrong_span=lambda u: f"w{u}").endswith(
        "Final Answer: w0.5"
    )


@pytest.mark.parametrize("task", ["mc", "math", "span"])
def test_unparseable_endings_do_not_parse(task: str) -> None:
    for u in (0.0, 0.4, 0.9):
        text = pad_reasoning(task, unparseable_ending(u), 400, itertools.cycle(range(256)))
        gold = {"mc": "A", "math": "4", "span": "four"}[task]
        choices = ("1", "2", "3", "4") if task == "mc" else None
        assert not score_by_task(task, text, gold, choices=choices).parse_ok, text


def test_pad_reasoning_reaches_the_target_and_ends_with_the_ending() -> None:
    end = "Final Answer: 7"
    text = pad_reasoning("math", end, 600, iter(range(10_000)))
    assert text.endswith("\n" + end) and abs(len(text) - 600) < 60
    assert pad_reasoning("math", end, 10, iter(range(10))) == end  # no room: the ending only
    # The same draws give the same text.
    assert text == pad_reasoning("math", end, 600, iter(range(10_000)))


def test_paraphrases_are_distinct_keep_numbers_and_number_extra_ones() -> None:
    q = "What is 12 times 7?"
    out = paraphrases(q, 5, fixed_u, "q1")
    assert len(out) == len(set(out)) == 5 and q not in out
    assert all(re.findall(r"\d+", r) == ["12", "7"] for r in out)
    assert out == paraphrases(q, 5, fixed_u, "q1")  # deterministic in the draws
    many = paraphrases(q, 60, fixed_u, "q1")
    assert len(set(many)) == 60 and many[:5] == out
    assert any("(version" in r for r in many)  # more than the templates: numbered copies
    assert any(r.startswith("Determine 12 times 7") for r in many)  # the imperative form
