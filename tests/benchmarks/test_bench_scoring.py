"""Golden cases for answer extraction and the three scorers."""

from __future__ import annotations

import pytest

from dars.benchmarks.parsing import extract_answer, extract_final_answer, last_boxed
from dars.benchmarks.scoring import score_by_task, score_math, score_mc, score_span

# ---------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("work...\nFinal Answer: 42", "42"),
        ("**Final Answer:** B", "B"),
        ("**Final Answer**: $\\frac{1}{2}$", "\\frac{1}{2}"),
        ("Final answer: \\boxed{7}.", "7"),
        ("Final Answer: 3\nlater\nFinal Answer: 5", "5"),  # the last occurrence wins
        ("Final Answer:\n\n  12 apples", "12 apples"),  # answer on the next line
        ("FINAL ANSWER: Paris.", "Paris"),
        ("no marker here", None),
        ("Final Answer:   ", None),
    ],
)
def test_extract_final_answer(response, expected):
    assert extract_final_answer(response) == expected


def test_last_boxed_handles_nesting_truncation_and_braceless():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{2} then \\boxed{\\frac{1}{") == "2"  # truncated last box skipped
    assert last_boxed("so \\boxed 5 done") == "5"
    assert last_boxed("nothing") is None


def test_extract_answer_reports_how():
    assert extract_answer("Final Answer: 1") == ("1", "final")
    assert extract_answer("thus \\boxed{x+1}") == ("x+1", "boxed")
    assert extract_answer("I am not sure") == (None, "none")


# ---------------------------------------------------------------------------- multiple choice


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
    s = score_mc(response, gold)
    assert (s.value, s.parsed, s.parse_ok) == (value, parsed, True)


def test_score_mc_unparseable_is_zero_and_not_ok():
    s = score_mc("A good question; I cannot decide.", "A")
    assert s.value == 0.0 and not s.parse_ok
    s = score_mc("", "A")
    assert s.value == 0.0 and not s.parse_ok


def test_score_mc_option_text_when_choices_known():
    choices = ("Photon", "Gluon", "W boson", "Graviton")
    assert score_mc("Final Answer: photon.", "A", choices=choices).value == 1.0
    assert score_mc("Final Answer: W-boson", "C", choices=choices).value == 1.0
    assert score_mc("Final Answer: Gluon", "A", choices=choices).parsed == "B"
    assert not score_mc("Final Answer: Higgs", "A", choices=choices).parse_ok


def test_score_mc_letter_beyond_d_when_gold_says_so():
    assert score_mc("Final Answer: F", "F", n_choices=6).value == 1.0


# ---------------------------------------------------------------------------- math


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
    s = score_math(f"Some work.\nFinal Answer: {answer}", gold)
    assert s.parse_ok and s.value == 1.0, (answer, gold)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("5", "6"), ("0.5", "50"), ("\\frac{1}{3}", "0.34"), ("x^2", "x^3"), ("(1, 2)", "(2, 1)")],
)
def test_math_different_answers(answer, gold):
    assert score_math(f"Final Answer: {answer}", gold).value == 0.0


def test_math_boxed_fallback_and_missing_answer():
    assert score_math("so the answer is $\\boxed{\\frac{3}{4}}$", "0.75").value == 1.0
    s = score_math("I give up", "1")
    assert (s.value, s.parsed, s.parse_ok) == (0.0, None, False)


# ---------------------------------------------------------------------------- span


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
    s = score_span(f"Reasoning.\nFinal Answer: {answer}", golds)
    assert s.parse_ok and s.value == pytest.approx(value)


def test_span_single_gold_string_and_missing_answer():
    assert score_span("Final Answer: Paris", "Paris").value == 1.0
    s = score_span("no final line", ("Paris",))
    assert (s.value, s.parse_ok) == (0.0, False)


def test_score_by_task_rejects_unknown_task():
    with pytest.raises(ValueError, match="allowed values: mc, math, span"):
        score_by_task("essay", "x", "y")
