"""Math (``math``): the gold is one answer string (a number or a LaTeX expression).

Decode: the problem (or its rewrite); the final line holds only the result. Rewrite: the whole
problem, keeping every number, condition and the requested quantity. Score: 1.0 when the final
answer is equivalent to the gold (``dars.benchmarks.mathequiv.math_equal``: canonical strings,
then math-verify).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dars.benchmarks.base import Item, Score, TaskType, register_task_type
from dars.benchmarks.mathequiv import math_equal
from dars.benchmarks.parsing import FINAL_LINE, extract_answer
from dars.benchmarks.prompts import decode_chat, rewrite_chat

REWRITE_RULES = (
    "Rewrite the problem below. Keep every number, variable, expression (LaTeX as written), "
    "condition and constraint, and ask for exactly the same quantity in the same form (same "
    "units, same rounding, same way of expressing the answer)."
)


class Math(TaskType):
    """Gold is an answer string; scoring is math equivalence (math-verify)."""

    name = "math"
    binary_scores = True

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        """Problem (or its rewrite); the last line holds only the final result."""
        self.check_item(item)
        return decode_chat(
            "Solve the following math problem.\n\n"
            f"Problem: {question if question is not None else item.question}\n\n"
            f"End your response with a line of the form '{FINAL_LINE} <result>' containing only "
            "the final result (a number or a simplified LaTeX expression), without units or words."
        )

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        self.check_item(item)
        return rewrite_chat(REWRITE_RULES, [f"Question: {item.question}", ""], n)

    def score_answer(
        self, response: str, gold: Any, *, choices: Sequence[str] | None = None
    ) -> Score:
        """1.0 when the final answer (``Final Answer:`` line, else last ``\\boxed{}``) is
        equivalent to ``gold`` by ``math_equal``."""
        answer, _ = extract_answer(response or "")
        if answer is None:
            return Score(0.0, None, False)
        return Score(float(math_equal(answer, str(gold))), answer, True)

    def wrong_answer(self, item: Item, u: float) -> str:
        """A nearby integer or decimal for a numeric gold, else the gold expression plus one
        (never equivalent to it)."""
        g = self.gold_text(item).strip()
        if re.fullmatch(r"-?\d+", g.replace(",", "")):
            v = int(g.replace(",", ""))
            delta = [1, -1, 2, v if v else 3, -2, 10][int(u * 6)]
            return str(v + delta if delta else v + 1)
        if re.fullmatch(r"-?\d*\.\d+", g):
            return f"{float(g) + [1, -1, 0.5, 2][int(u * 4)]:g}"
        return f"{g}+1"


MATH = register_task_type(Math())
