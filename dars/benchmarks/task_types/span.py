"""Span (``span``, DROP-style reading): a passage, a question, and a tuple of accepted answers.

Decode: the passage and the question (or its rewrite); a number for counts, else words from the
passage, several spans joined by " | ". Rewrite: only the question; the passage is shown but
stays fixed. Score: DROP F1 (``dars.benchmarks.dropf1``) against the best accepted answer, so
partial answers earn partial credit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dars.benchmarks.base import Item, Score, TaskType, register_task_type
from dars.benchmarks.dropf1 import drop_max_em_f1
from dars.benchmarks.parsing import FINAL_LINE, extract_answer
from dars.benchmarks.prompts import decode_chat, rewrite_chat
from dars.benchmarks.rewrite_checks import normalise

REWRITE_RULES = (
    "Rewrite only the question below. The passage is shown for context and stays fixed; the "
    "rewritten question must have the same answer in the passage, asked for in the same form "
    "(a number stays a number, a name stays a name)."
)

_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_STOP = {"that", "this", "with", "from", "were", "have", "their", "which", "there", "they", "than"}
# Wrong answers come in this many variants per item (u picks one), enough for varied responses
# and few enough for a caller to cache them.
WRONG_VARIANTS = 16


def _golds(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else list(gold)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class Span(TaskType):
    """Gold is a tuple of accepted answers; scoring is DROP F1 (max over the answers)."""

    name = "span"
    binary_scores = False
    several_answers = True

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        """Passage + question (or its rewrite); answer from the passage."""
        self.check_item(item)
        passage = f"Passage: {item.context}\n\n" if item.context else ""
        return decode_chat(
            "Read the passage and answer the question using the information in it.\n\n"
            f"{passage}Question: {question if question is not None else item.question}\n\n"
            "Answer with a number when the question asks for a number or a count, otherwise with "
            "the exact words from the passage; when several items are asked for, separate them "
            f"with ' | '. End your response with a line of the form '{FINAL_LINE} <answer>'."
        )

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        """The passage (shown, not rewritten), then the question to rewrite."""
        self.check_item(item)
        body = [f"Passage (do not rewrite): {item.context}", ""] if item.context else []
        body += [f"Question: {item.question}", ""]
        return rewrite_chat(REWRITE_RULES, body, n)

    def score_answer(
        self, response: str, gold: Any, *, choices: Sequence[str] | None = None
    ) -> Score:
        """DROP F1 of the final answer against the best accepted gold answer. ``gold`` is one
        answer or a sequence of accepted answers; a multi-span answer is one string with spans
        separated by ``|`` (the same convention the prompt asks models to use)."""
        answer, _ = extract_answer(response or "")
        if answer is None:
            return Score(0.0, None, False)
        _, f1 = drop_max_em_f1(answer, _golds(gold))
        return Score(f1, answer, True)

    def rewrite_structure_ok(self, item: Item, rewrite: str) -> bool:
        """The rewrite does not restate the passage (which stays fixed)."""
        return not item.context or normalise(item.context)[:200] not in normalise(rewrite)

    def gold_text(self, item: Item) -> str:
        """The first accepted answer."""
        return item.gold if isinstance(item.gold, str) else str(list(item.gold)[0])

    def wrong_answer(self, item: Item, u: float) -> str:
        """A plausible wrong span scoring 0: a number near the gold's first number, else a word
        of the passage, else a stock answer. ``u`` picks one of ``WRONG_VARIANTS`` variants."""
        bucket = int(u * WRONG_VARIANTS)
        golds = _golds(item.gold)
        gold = self.gold_text(item)
        cands: list[str] = []
        nums = _NUM_RE.findall(gold)
        if nums:
            base = float(nums[0])
            step = 1 + bucket % 5
            cands += [_fmt_num(base + step), _fmt_num(base - step), _fmt_num(base + 10 * step)]
        words = [w for w in _WORD_RE.findall(item.context or "") if w.lower() not in _STOP]
        if words:
            start = bucket * len(words) // WRONG_VARIANTS
            cands += [words[(start + j) % len(words)] for j in range(min(6, len(words)))]
        cands += ["unknown", "none of them", "17"]
        return next((c for c in cands if drop_max_em_f1(c, golds)[1] == 0.0), "unclear")

    def partial_answer(self, item: Item) -> tuple[str | None, float]:
        """The first candidate scoring strictly between 0 and 1: the first span of a multi-span
        gold, else the gold padded with a word of the passage (or question) or "overall"."""
        golds = _golds(item.gold)
        gold = self.gold_text(item)
        cands: list[str] = []
        if "|" in gold:
            cands.append(gold.split("|")[0].strip())
        gold_words = {w.lower() for w in re.findall(r"\w+", gold)}
        extra = [
            w
            for w in _WORD_RE.findall(item.context or item.question)
            if w.lower() not in gold_words and w.lower() not in _STOP
        ]
        cands += [f"{gold} {w}" for w in extra[:4]] + [f"{gold} overall"]
        for c in cands:
            f1 = drop_max_em_f1(c, golds)[1]
            if 0.0 < f1 < 1.0:
                return c, f1
        return None, 0.0


SPAN = register_task_type(Span())
