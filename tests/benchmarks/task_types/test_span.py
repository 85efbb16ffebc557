"""The span task type: prompts (byte for byte), DROP-F1 scoring, the passage check, and the
simulator hooks (wrong and partial-credit answers)."""

from __future__ import annotations

import pytest

from dars.benchmarks import Item, get_task_type

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
# Expected values: what the simulated pool wrote before it asked the task types (d3d986f).

U16 = [(b + 0.5) / 16 for b in range(16)]  # one u in each of the WRONG_VARIANTS buckets
BRADY = Item(
    "b3",
    "How many touchdowns did Brady throw?",
    ("3", "three"),
    "span",
    context="Tom Brady threw 3 touchdown passes to Gronkowski in the fourth quarter.",
)
# (item, the gold's text, (partial answer, its DROP F1), the wrong answers for u in U16)
SIM_ANSWERS = [
    (ITEM, "Bears", ("Bears beat", 0.67), ["beat"] * 11 + ["Hawks"] * 5),
    (
        Item(
            "t1", "Who threw?", ("Tom Brady", "Brady"), "span", context="Tom Brady threw 3 passes."
        ),
        "Tom Brady",
        ("Tom Brady threw", 0.8),
        ["threw"] * 11 + ["passes"] * 5,
    ),
    (
        Item("t2", "Scores?", ("12 | 14",), "span", context="Scores were 12 and 14 in the half."),
        "12 | 14",
        ("12", 0.5),  # the first span of a multi-span gold
        ["13", "10", "15", "16", "17"] * 3 + ["13"],  # "14" is a gold span: skipped
    ),
    (
        Item("t3", "How many?", "7", "span"),
        "7",
        ("7 many", 0.67),
        ["8", "9", "10", "11", "12"] * 3 + ["8"],
    ),
    (BRADY, "3", ("3 Brady", 0.67), ["4", "5", "6", "7", "8"] * 3 + ["4"]),
    (Item("ab", "?", "a | b", "span"), "a | b", ("a", 0.5), ["unknown"] * 16),  # no passage
]
ODD = [item for item, *_ in SIM_ANSWERS]


@pytest.mark.parametrize(
    ("item", "gold", "partial", "wrong"), SIM_ANSWERS, ids=[i.query_id for i in ODD]
)
def test_sim_hooks_give_what_the_simulator_gave(item, gold, partial, wrong):
    assert SPAN.gold_text(item) == gold
    assert SPAN.final_line(gold) == f"Final Answer: {gold}"
    assert SPAN.partial_answer(item) == partial
    assert [SPAN.wrong_answer(item, u) for u in U16] == wrong
    # the draw only picks a bucket: any u in the same bucket gives the same answer
    assert [SPAN.wrong_answer(item, b / 16) for b in range(16)] == wrong


def test_sim_hooks_on_every_demo_item(demo_answers_digest):
    digest = "8777372bebed199948fb83dbcef08579d13d1d809e2311ddbdfcb4a6fc5d6a6d"
    assert demo_answers_digest("span") == digest


def test_partial_answers_earn_partial_credit_and_wrong_ones_none(demo_items):
    n_partial = 0
    for item in demo_items["demo_span"] + ODD:
        answer, f1 = SPAN.partial_answer(item)
        if answer is not None:
            n_partial += 1
            assert 0.0 < f1 < 1.0 and SPAN.score(SPAN.final_line(answer), item).value == f1
        for u in U16 if item in ODD else (0.0, 0.5, 0.99):
            assert SPAN.score(SPAN.final_line(SPAN.wrong_answer(item, u)), item).value == 0.0
    assert n_partial >= 50
