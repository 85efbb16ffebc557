"""Multiple choice (``mc``): the gold is an option letter, the options are shown in a fixed order.

Decode: the question (or its rewrite) and the lettered options; the model ends with one letter.
Rewrite: only the question stem; the options are shown to the rewriter but never rewritten.
Score: 1.0 when the chosen letter is the gold letter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dars.benchmarks.base import Item, Score, TaskType, register_task_type
from dars.benchmarks.parsing import (
    FINAL_LINE,
    choice_letters,
    extract_final_answer,
    fallback_letter,
    last_boxed,
    letter_from_answer,
)
from dars.benchmarks.prompts import decode_chat, format_choices, rewrite_chat

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# A line that starts like an answer option ("A) …", "(B) …", "C. …"): a rewrite must not bring
# its own options, the item's are rendered after it.
_OPTION_RE = re.compile(r"(?m)^\s*\(?[A-D][).:]\s+\S")

REWRITE_RULES = (
    "Rewrite only the question stem below. The answer options will be shown unchanged after "
    "your rewrite, so do not include, reorder, or refer to them by letter, and keep every "
    "technical term, quantity and condition of the stem."
)


def _option_key(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()


class MultipleChoice(TaskType):
    """Gold is an option letter (A, B, …); scoring is letter match."""

    name = "mc"
    binary_scores = True
    has_choices = True

    def validate_item(self, item: Item) -> None:
        if not item.choices:
            raise ValueError(f"multiple-choice item {item.query_id!r} has no choices")

    def gold_from_answers(self, answers: tuple[str, ...], choices: Sequence[str] | None) -> str:
        """The option letter: the answer is a letter (any case) or exactly one option's text."""
        (answer,) = answers
        choices = list(choices or ())
        letters = choice_letters(len(choices))
        if len(answer) == 1 and answer.upper() in letters:
            return answer.upper()
        if answer in choices:
            return letters[choices.index(answer)]
        raise ValueError(f"is {answer!r}: neither a letter in {letters} nor one of the choices")

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        """Question (or its rewrite) + lettered options; answer one letter."""
        self.check_item(item)
        letters = choice_letters(len(item.choices))
        listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
        return decode_chat(
            "Answer the following multiple-choice question.\n\n"
            f"Question: {question if question is not None else item.question}\n\n"
            f"{format_choices(item.choices)}\n\n"
            f"End your response with a line of the form '{FINAL_LINE} X' where X is one letter "
            f"({listed})."
        )

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        """The stem to rewrite, then the options (shown so the stem keeps fitting them)."""
        self.check_item(item)
        body = [f"Question: {item.question}", ""]
        body += ["Answer options (do not rewrite, do not include):", format_choices(item.choices)]
        body += [""]
        return rewrite_chat(REWRITE_RULES, body, n)

    def score_answer(
        self,
        response: str,
        gold: Any,
        *,
        choices: Sequence[str] | None = None,
        n_choices: int = 4,
    ) -> Score:
        """1.0 when the chosen option letter equals ``gold`` (a letter). The letter comes from
        the ``Final Answer:`` line (or, when ``choices`` are given, that line's text matching
        exactly one option's text), else the last box, else a standalone letter in the text.
        ``n_choices``: how many options there are when ``choices`` are not given."""
        gold_letter = str(gold).strip().upper()
        if choices:
            n_choices = len(choices)
        letters = choice_letters(max(n_choices, _ALPHABET.index(gold_letter) + 1))
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

    def rewrite_structure_ok(self, item: Item, rewrite: str) -> bool:
        """No answer options of its own (the item's are rendered after the rewrite)."""
        return not _OPTION_RE.search(rewrite)

    def gold_text(self, item: Item) -> str:
        """The gold letter, upper case."""
        return str(item.gold).strip().upper()

    def wrong_answer(self, item: Item, u: float) -> str:
        """Another option's letter, drawn uniformly by ``u`` (four options when the item lists
        none; the gold itself when it is the only option)."""
        letters = _ALPHABET[: len(item.choices or ()) or 4]
        gold = self.gold_text(item)
        others = [x for x in letters if x != gold] or [gold]
        return others[int(u * len(others))]


MC = register_task_type(MultipleChoice())
