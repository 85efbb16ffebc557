"""The three scorers: multiple choice (letter match), math (equivalence), span (DROP F1).

Each returns a ``Score``: ``value`` in [0, 1], ``parsed`` the extracted answer (None when nothing
could be extracted) and ``parse_ok``. A response whose answer cannot be extracted scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dars.benchmarks.base import Score
from dars.benchmarks.dropf1 import drop_max_em_f1
from dars.benchmarks.mathequiv import math_equal
from dars.benchmarks.parsing import (
    choice_letters,
    extract_answer,
    extract_final_answer,
    fallback_letter,
    last_boxed,
    letter_from_answer,
)


def _option_key(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()


def score_mc(
    response: str, gold: str, *, n_choices: int = 4, choices: Sequence[str] | None = None
) -> Score:
    """1.0 when the chosen option letter equals ``gold`` (a letter). The letter comes from the
    ``Final Answer:`` line (or, when ``choices`` are given, that line's text matching exactly one
    option's text), else the last box, else a standalone letter in the text."""
    gold_letter = str(gold).strip().upper()
    if choices:
        n_choices = len(choices)
    letters = choice_letters(max(n_choices, "ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(gold_letter) + 1))
    response = response or ""
    letter = None
    final = extract_final_answer(response)
    if final is not None:
        letter = letter_from_answer(final, letters)
        if letter is None and choices:
            hits = [i for i, c in enumerate(choices) if _option_key(c) == _option_key(final)]
            if len(hits) == 1:
                letter = letters[hits[0]]
    if letter is None:
        boxed = last_boxed(response)
        if boxed:
            letter = letter_from_answer(boxed, letters)
    if letter is None:
        letter = fallback_letter(response, letters)
    if letter is None:
        return Score(0.0, final, False)
    return Score(float(letter == gold_letter), letter, True)


def score_math(response: str, gold: str) -> Score:
    """1.0 when the final answer (``Final Answer:`` line, else last ``\\boxed{}``) is equivalent
    to ``gold`` by ``math_equal``."""
    answer, _ = extract_answer(response or "")
    if answer is None:
        return Score(0.0, None, False)
    return Score(float(math_equal(answer, str(gold))), answer, True)


def score_span(response: str, gold: str | Sequence[str]) -> Score:
    """DROP F1 of the final answer against the best accepted gold answer. ``gold`` is one answer
    or a sequence of accepted answers; a multi-span answer is one string with spans separated by
    ``|`` (the same convention the prompt asks models to use)."""
    answer, _ = extract_answer(response or "")
    if answer is None:
        return Score(0.0, None, False)
    golds = [gold] if isinstance(gold, str) else list(gold)
    _, f1 = drop_max_em_f1(answer, golds)
    return Score(f1, answer, True)


def score_by_task(
    task_type: str, response: str, gold: object, *, choices: Sequence[str] | None = None
) -> Score:
    """Dispatch on the task type ("mc", "math", "span"); ``choices`` only matter for mc."""
    if task_type == "mc":
        return score_mc(response, str(gold), choices=choices)
    if task_type == "math":
        return score_math(response, str(gold))
    if task_type == "span":
        return score_span(response, gold)  # type: ignore[arg-type]
    raise ValueError(f"unknown task_type {task_type!r}; allowed values: mc, math, span")
