"""What the simulated pool writes around an answer (``dars.sim.text``): endings built from the
task type's final line, filler, unparseable endings that no scorer can read, paraphrases that keep
the question's numbers. The answers themselves come from the task types (their simulator hooks
are tested in ``tests/benchmarks/task_types``)."""

from __future__ import annotations

import itertools
import re

import pytest

from dars.benchmarks import get_task_type
from dars.benchmarks.scoring import score_by_task
from dars.sim.text import ending, pad_reasoning, paraphrases, unparseable_ending


def fixed_u(*parts: object) -> float:
    """A deterministic stand-in for the world's uniform draw."""
    return (sum(map(ord, "|".join(map(str, parts)))) % 997 + 0.5) / 997


class _Shout:
    """Stands in for a task type the simulator knows nothing about: only a name and its own
    final line."""

    name = "shout"

    def final_line(self, answer: str) -> str:
        return f"ANSWER >> {answer}"


def test_endings_are_a_lead_in_then_the_task_types_final_line() -> None:
    mc, span = get_task_type("mc"), get_task_type("span")
    assert ending(mc, "C") == (
        "Comparing the options, option C is the most consistent.\nFinal Answer: C"
    )
    assert ending(span, "3 passes") == "The passage states this directly.\nFinal Answer: 3 passes"
    assert ending(get_task_type("math"), "\\frac{1}{2}").endswith("\nFinal Answer: \\frac{1}{2}")
    # An unknown task type: a generic lead-in, and its own final line.
    assert (
        ending(_Shout(), "{x}") == "Putting everything together gives the following.\nANSWER >> {x}"
    )


@pytest.mark.parametrize("filler", ["mc", "math", "span", "shout"])
@pytest.mark.parametrize("task", ["mc", "math", "span"])
def test_unparseable_endings_do_not_parse(task: str, filler: str) -> None:
    # "shout" has no filler of its own: the generic filler must not parse either.
    for u in (0.0, 0.4, 0.9):
        text = pad_reasoning(filler, unparseable_ending(u), 400, itertools.cycle(range(256)))
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
    # A task type without filler of its own gets the generic sentences.
    generic = pad_reasoning("shout", end, 600, iter(range(10_000)))
    assert generic.endswith("\n" + end) and abs(len(generic) - 600) < 60
    assert "Let me restate what the question asks for." in generic


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
