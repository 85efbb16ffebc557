"""The math task type: prompts (byte for byte), equivalence scoring and the simulator hooks."""

from __future__ import annotations

import pytest

from dars.benchmarks import Item, get_task_type

MATH = get_task_type("math")
ITEM = Item("x1", "What is $\\frac{3}{4}$ of 20?", "15", "math")


def test_prompts_byte_for_byte():
    assert MATH.decode_messages(ITEM)[1]["content"] == (
        "Solve the following math problem.\n\nProblem: What is $\\frac{3}{4}$ of 20?\n\nEnd your "
        "response with a line of the form 'Final Answer: <result>' containing only the final "
        "result (a number or a simplified LaTeX expression), without units or words."
    )
    assert MATH.rewrite_messages(ITEM, 2)[1]["content"] == (
        "Rewrite the problem below. Keep every number, variable, expression (LaTeX as written), "
        "condition and constraint, and ask for exactly the same quantity in the same form (same "
        "units, same rounding, same way of expressing the answer).\n\nQuestion: What is "
        "$\\frac{3}{4}$ of 20?\n\nReturn only a JSON array of exactly 2 strings, each one "
        'complete rewritten question, for example ["…", "…"]. No other text.'
    )
    with pytest.raises(ValueError, match="has task_type 'mc', not math"):
        MATH.decode_messages(Item("m", "?", "A", "mc", choices=("a", "b")))


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("10.0", "10"),
        ("\\dfrac{1}{2}", "0.5"),
        ("0.5", "\\frac12"),
        ("1,000", "1000"),
        ("x = 3", "3"),
        ("10\\text{ cm}", "10"),
        ("10", "10\\text{ cm}"),
        ("Evelyn", "\\text{Evelyn}"),
        ("(C)", "\\text{(C)}"),
        ("\\$18.90", "18.90"),
        ("90^\\circ", "90"),
        ("50\\%", "50"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("2\\sqrt{5}", "\\sqrt{20}"),
        ("1+x^2", "x^2+1"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
        ("[2, 5)", "[2,5)"),
        ("-\\frac{5}{3}", "\\frac{-5}{3}"),
        ("0.3333333", "\\frac{1}{3}"),
    ],
)
def test_math_equivalent_forms(answer, gold):
    s = MATH.score_answer(f"Some work.\nFinal Answer: {answer}", gold)
    assert s.parse_ok and s.value == 1.0, (answer, gold)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("5", "6"), ("0.5", "50"), ("\\frac{1}{3}", "0.34"), ("x^2", "x^3"), ("(1, 2)", "(2, 1)")],
)
def test_math_different_answers(answer, gold):
    assert MATH.score_answer(f"Final Answer: {answer}", gold).value == 0.0


def test_math_boxed_fallback_and_missing_answer():
    assert MATH.score_answer("so the answer is $\\boxed{\\frac{3}{4}}$", "0.75").value == 1.0
    s = MATH.score_answer("I give up", "1")
    assert (s.value, s.parsed, s.parse_ok) == (0.0, None, False)


def test_gold_from_one_answer():
    assert MATH.gold_from_answers(("0.75",), None) == "0.75"


# ---------------------------------------------------------------------------- simulator hooks
# Expected values: what the simulated pool wrote before it asked the task types (d3d986f).

U12 = [i / 12 for i in range(12)]
# gold → the wrong answers for u in U12 (a correct response's final line is the gold as given)
SIM_WRONG = {
    "15": ["16", "16", "14", "14", "17", "17", "30", "30", "13", "13", "25", "25"],
    "42": ["43", "43", "41", "41", "44", "44", "84", "84", "40", "40", "52", "52"],
    "-7": ["-6", "-6", "-8", "-8", "-5", "-5", "-14", "-14", "-9", "-9", "3", "3"],
    "0": ["1", "1", "-1", "-1", "2", "2", "3", "3", "-2", "-2", "10", "10"],
    "1,000": ["1001", "1001", "999", "999", "1002", "1002", "2000", "2000", "998", "998"]
    + ["1010", "1010"],
    "1,024": ["1025", "1025", "1023", "1023", "1026", "1026", "2048", "2048", "1022", "1022"]
    + ["1034", "1034"],
    "0.25": ["1.25"] * 3 + ["-0.75"] * 3 + ["0.75"] * 3 + ["2.25"] * 3,
    "-.5": ["0.5"] * 3 + ["-1.5"] * 3 + ["0"] * 3 + ["1.5"] * 3,
    "x^2+1": ["x^2+1+1"] * 12,
    "\\frac{1}{2}": ["\\frac{1}{2}+1"] * 12,
    "(1, 2)": ["(1, 2)+1"] * 12,
}


@pytest.mark.parametrize("gold", list(SIM_WRONG))
def test_sim_hooks_give_what_the_simulator_gave(gold):
    item = Item("h", "?", gold, "math")
    assert MATH.final_line(MATH.gold_text(item)) == f"Final Answer: {gold}"
    assert [MATH.wrong_answer(item, u) for u in U12] == SIM_WRONG[gold]
    assert MATH.partial_answer(item) == (None, 0.0)
    for u in U12:
        wrong = MATH.wrong_answer(item, u)
        assert wrong != gold and MATH.score(MATH.final_line(wrong), item).value == 0.0, wrong


def test_sim_hooks_on_every_demo_item(demo_answers_digest):
    digest = "6ea26b239e127a32ea2291c4076a98fb5fc4a6d92ac2b23c5915cea351353e37"
    assert demo_answers_digest("math") == digest


def test_wrong_answers_score_zero(demo_items):
    for item in demo_items["demo_math"][:30]:
        for u in (0.05, 0.4, 0.9):
            assert MATH.score(MATH.final_line(MATH.wrong_answer(item, u)), item).value == 0.0
