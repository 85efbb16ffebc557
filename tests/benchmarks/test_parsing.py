"""Golden cases for extracting the final answer (and a choice letter) from a response."""

from __future__ import annotations

import pytest

from dars.benchmarks.parsing import (
    FINAL_LINE,
    choice_letters,
    extract_answer,
    extract_final_answer,
    last_boxed,
    letter_from_answer,
)


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


def test_the_final_line_marker_is_what_extraction_reads():
    assert extract_final_answer(f"work\n{FINAL_LINE} 7") == "7"


@pytest.mark.parametrize(
    ("answer", "letter"),
    [("B", "B"), ("(c)", "C"), ("D) 42", "D"), ("Option A", "A"), ("\\text{(B)}", "B"),
     ("a 5 kg mass", None), ("E", None)],
)  # fmt: skip
def test_letter_from_answer(answer, letter):
    assert letter_from_answer(answer, choice_letters(4)) == letter
