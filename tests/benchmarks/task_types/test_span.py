"""The span task type: prompts (byte for byte), DROP-F1 scoring, the passage check, and the
simulator hooks (wrong and partial-credit answers)."""

from __future__ import annotations

import pytest

from dars.benchmarks import Item, get_task_type
from dars.llm import sim

SPAN = get_task_type("span")
ITEM = Item("s1", "Who won?", ("Bears",), "span", context="The Bears beat the Hawks 21-7.")


def test_prompts_byte_for_byte():
    assert SPAN.decode_messages(ITEM)[1]["content"] == (
        "Read the passage and answer the question using the information in it.\n\nPassage: The "
        "Bears beat the Hawks 21-7.\n\nQuestion: Who won?\n\nAnswer with a number when the "
        "question asks for a number or a count, otherwise with the exact words from the passage; "
        "when several items are asked for, separate them with ' | '. End your response with a "
        "line of the form 'Final Answer: <answer>'."
    )
    assert SPAN.rewrite_messages(ITEM, 2)[1]["content"] == (
        "Rewrite only the question below. The passage is shown for context and stays fixed; the "
        "rewritten question must have the same answer in the passage, asked for in the same form "
        "(a number stays a number, a name stays a name).\n\nPassage (do not rewrite): The Bears "
        "beat the Hawks 21-7.\n\nQuestion: Who won?\n\nReturn only a JSON array of exactly 2 "
        'strings, each one complete rewritten question, for example ["…", "…"]. No other text.'
    )


def test_without_a_passage_the_prompts_only_hold_the_question():
    bare = Item("s2", "How many?", ("3",), "span")
    assert "Passage" not in SPAN.decode_messages(bare)[1]["content"]
    assert "Passage" not in SPAN.rewrite_messages(bare, 1)[1]["content"]


@pytest.mark.parametrize(
    ("answer", "golds", "value"),
    [
        ("34", ("34.0",), 1.0),
        ("the Browns", ("Browns",), 1.0),
        ("Browns.", ("the Browns",), 1.0),
        ("3 touchdowns", ("3",), 0.67),
        ("4", ("3",), 0.0),  # number mismatch scores 0, even though both are one token
        ("Pakistanis | Filipinos", ("Pakistanis | Filipinos",), 1.0),
        ("Filipinos | Pakistanis", ("Pakistanis | Filipinos",), 1.0),  # order free
        ("Pakistanis", ("Pakistanis | Filipinos",), 0.5),
        ("Pakistanis and Filipinos", ("Pakistanis | Filipinos",), 0.25),
        ("Pakistani and Filipino", ("Pakistanis and Filipinos", "Pakistani and Filipino"), 1.0),
        ("field-goal 38-yard", ("38-yard field goal",), 1.0),  # hyphens split tokens, bag order
        ("1,000", ("1000",), 1.0),
    ],
)
def test_span_f1(answer, golds, value):
    s = SPAN.score_answer(f"Reasoning.\nFinal Answer: {answer}", golds)
    assert s.parse_ok and s.value == pytest.approx(value)


def test_span_single_gold_string_and_missing_answer():
    assert SPAN.score_answer("Final Answer: Paris", "Paris").value == 1.0
    s = SPAN.score_answer("no final line", ("Paris",))
    assert (s.value, s.parse_ok) == (0.0, False)


def test_gold_keeps_every_accepted_answer():
    assert SPAN.gold_from_answers(("Bears | Hawks", "the Bears | the Hawks"), None) == (
        "Bears | Hawks",
        "the Bears | the Hawks",
    )


def test_rewrite_must_not_restate_the_passage():
    assert SPAN.rewrite_structure_ok(ITEM, "Which team won?")
    assert not SPAN.rewrite_structure_ok(ITEM, "The Bears beat the Hawks 21-7. Who won?")
    assert SPAN.rewrite_structure_ok(Item("s2", "How many?", ("3",), "span"), "Count them.")


# ---------------------------------------------------------------------------- simulator hooks

GRID = [i / 32 for i in range(32)]
ODD = [
    Item("t1", "Who threw?", ("Tom Brady", "Brady"), "span", context="Tom Brady threw 3 passes."),
    Item("t2", "Scores?", ("12 | 14",), "span", context="Scores were 12 and 14 in the half."),
    Item("t3", "How many?", "7", "span"),  # one gold string, no passage
]


def test_sim_hooks_give_what_the_simulator_gives(demo_items, sim_world, sim_ending):
    for item in demo_items["demo_span"] + ODD:
        sim_world.register_items("s", [item])
        assert SPAN.gold_text(item) == sim._gold_text(item)
        assert SPAN.partial_answer(item) == sim_world.partial_answer("s", item)
        for u in GRID:
            assert SPAN.wrong_answer(item, u) == sim_world._wrong_span("s", item, u)
        assert sim_ending("s", item, "correct")[0] == SPAN.final_line(SPAN.gold_text(item))
        partial = SPAN.partial_answer(item)[0] or SPAN.gold_text(item)
        assert sim_ending("s", item, "partial")[0] == SPAN.final_line(partial)
        for d in range(4):
            line, u = sim_ending("s", item, "wrong", d)
            assert line == SPAN.final_line(SPAN.wrong_answer(item, u))


def test_partial_answers_earn_partial_credit_and_wrong_ones_none(demo_items):
    n_partial = 0
    for item in demo_items["demo_span"] + ODD:
        answer, f1 = SPAN.partial_answer(item)
        if answer is not None:
            n_partial += 1
            assert 0.0 < f1 < 1.0 and SPAN.score(SPAN.final_line(answer), item).value == f1
        for u in (0.0, 0.5, 0.99):
            assert SPAN.score(SPAN.final_line(SPAN.wrong_answer(item, u)), item).value == 0.0
    assert n_partial >= 50
