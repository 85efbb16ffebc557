"""The multiple-choice task type: prompts (byte for byte), letter scoring, file answers, the
rewrite structure check and the simulator hooks."""

from __future__ import annotations

import pytest

from dars.benchmarks import Item, get_task_type

MC = get_task_type("mc")
ITEM = Item("m1", "Which gas do plants absorb?", "B", "mc", choices=("O2", "CO2", "N2", "He"))


def test_prompts_byte_for_byte():
    assert MC.decode_messages(ITEM)[1]["content"] == (
        "Answer the following multiple-choice question.\n\nQuestion: Which gas do plants absorb?"
        "\n\nA) O2\nB) CO2\nC) N2\nD) He\n\nEnd your response with a line of the form 'Final "
        "Answer: X' where X is one letter (A, B, C or D)."
    )
    assert MC.rewrite_messages(ITEM, 2)[1]["content"] == (
        "Rewrite only the question stem below. The answer options will be shown unchanged after "
        "your rewrite, so do not include, reorder, or refer to them by letter, and keep every "
        "technical term, quantity and condition of the stem.\n\nQuestion: Which gas do plants "
        "absorb?\n\nAnswer options (do not rewrite, do not include):\nA) O2\nB) CO2\nC) N2\nD) He"
        "\n\nReturn only a JSON array of exactly 2 strings, each one complete rewritten question, "
        'for example ["…", "…"]. No other text.'
    )


def test_items_need_choices_and_the_right_type():
    with pytest.raises(ValueError, match="multiple-choice item 'x' has no choices"):
        MC.decode_messages(Item("x", "?", "A", "mc"))
    with pytest.raises(ValueError, match="has task_type 'math', not mc"):
        MC.rewrite_messages(Item("y", "?", "1", "math"), 2)


# ---------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("response", "gold", "value", "parsed"),
    [
        ("Reasoning.\nFinal Answer: C", "C", 1.0, "C"),
        ("Final Answer: (b)", "B", 1.0, "B"),
        ("Final Answer: B) 42 kg", "B", 1.0, "B"),
        ("Final Answer: Option D", "D", 1.0, "D"),
        ("Final Answer: \\boxed{A}", "A", 1.0, "A"),
        ("**Final Answer:** **A**", "B", 0.0, "A"),
        ("Final Answer: A\n...\nFinal Answer: D", "D", 1.0, "D"),
        # fallbacks when there is no Final Answer line
        ("I conclude the answer is (C).", "C", 1.0, "C"),
        ("A long derivation follows.\nB", "B", 1.0, "B"),
        ("A student might think so, but the correct option is D", "D", 1.0, "D"),
    ],
)
def test_score_mc(response, gold, value, parsed):
    s = MC.score_answer(response, gold)
    assert (s.value, s.parsed, s.parse_ok) == (value, parsed, True)


def test_score_mc_unparseable_is_zero_and_not_ok():
    s = MC.score_answer("A good question; I cannot decide.", "A")
    assert s.value == 0.0 and not s.parse_ok
    s = MC.score_answer("", "A")
    assert s.value == 0.0 and not s.parse_ok


def test_score_mc_option_text_when_choices_known():
    choices = ("Photon", "Gluon", "W boson", "Graviton")
    assert MC.score_answer("Final Answer: photon.", "A", choices=choices).value == 1.0
    assert MC.score_answer("Final Answer: W-boson", "C", choices=choices).value == 1.0
    assert MC.score_answer("Final Answer: Gluon", "A", choices=choices).parsed == "B"
    assert not MC.score_answer("Final Answer: Higgs", "A", choices=choices).parse_ok
    item = Item("p", "?", "A", "mc", choices=choices)
    assert MC.score("Final Answer: photon", item).value == 1.0  # score(item) passes the choices


def test_score_mc_letter_beyond_d_when_gold_says_so():
    assert MC.score_answer("Final Answer: F", "F", n_choices=6).value == 1.0


# ---------------------------------------------------------------------------- files, checks


def test_gold_from_a_letter_or_an_option_text():
    assert MC.gold_from_answers(("b",), ["3", "4", "5"]) == "B"
    assert MC.gold_from_answers(("Paris",), ["Rome", "Paris"]) == "B"
    with pytest.raises(ValueError, match="is 'C': neither a letter in AB nor one of the choices"):
        MC.gold_from_answers(("C",), ["a", "b"])


def test_rewrite_must_not_bring_its_own_options():
    assert MC.rewrite_structure_ok(ITEM, "Plants take in which gas?")
    assert not MC.rewrite_structure_ok(ITEM, "Which gas?\nA) O2")
    assert not MC.rewrite_structure_ok(ITEM, "Which gas?\n (B) CO2")


# ---------------------------------------------------------------------------- simulator hooks
# Expected values: what the simulated pool wrote before it asked the task types (d3d986f).

U10 = [i / 10 for i in range(10)]
# (item, final line of a correct response, the wrong letters for u in U10)
SIM_ANSWERS = [
    (ITEM, "Final Answer: B", "AAAACCCDDD"),
    (Item("two", "?", "b", "mc", choices=("x", "y")), "Final Answer: B", "AAAAAAAAAA"),
    (Item("one", "?", "A", "mc", choices=("x",)), "Final Answer: A", "AAAAAAAAAA"),  # only A
    (Item("six", "?", "F", "mc", choices=tuple("uvwxyz")), "Final Answer: F", "AABBCCDDEE"),
    (Item("none", "?", " c ", "mc"), "Final Answer: C", "AAAABBBDDD"),  # no choices: four
]


@pytest.mark.parametrize(
    ("item", "correct", "wrong"), SIM_ANSWERS, ids=lambda v: getattr(v, "query_id", "")
)
def test_sim_hooks_give_what_the_simulator_gave(item, correct, wrong):
    assert MC.final_line(MC.gold_text(item)) == correct
    assert "".join(MC.wrong_answer(item, u) for u in U10) == wrong
    assert MC.partial_answer(item) == (None, 0.0)
    for u in U10:
        assert MC.score(MC.final_line(MC.wrong_answer(item, u)), item).value == (
            1.0 if item.query_id == "one" else 0.0
        )


def test_sim_hooks_on_every_demo_item(demo_answers_digest):
    digest = "fbb37e568ab31f35cff32bb42f25f026cd5fbdcafadca2917f5512cac1618ca1"
    assert demo_answers_digest("mc") == digest
