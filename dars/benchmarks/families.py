"""Benchmark base classes per task type: prompts and scorer wired once for each family."""

from __future__ import annotations

from typing import Any

from dars.benchmarks import prompts, scoring
from dars.benchmarks.base import Benchmark, Item, Score


class MultipleChoiceBenchmark(Benchmark):
    """Gold is an option letter; scoring is letter match."""

    task_type = "mc"

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        return prompts.mc_decode_messages(item, question)

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        return prompts.rewrite_messages(item, n)

    def score_answer(self, response: str, gold: Any) -> Score:
        return scoring.score_mc(response, gold)

    def score(self, response: str, item: Item) -> Score:
        return scoring.score_mc(response, item.gold, choices=item.choices)


class MathBenchmark(Benchmark):
    """Gold is an answer string; scoring is math equivalence (math-verify)."""

    task_type = "math"

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        return prompts.math_decode_messages(item, question)

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        return prompts.rewrite_messages(item, n)

    def score_answer(self, response: str, gold: Any) -> Score:
        return scoring.score_math(response, gold)


class SpanBenchmark(Benchmark):
    """Gold is a tuple of accepted answers; scoring is DROP F1 (max over the answers)."""

    task_type = "span"

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        return prompts.span_decode_messages(item, question)

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        return prompts.rewrite_messages(item, n)

    def score_answer(self, response: str, gold: Any) -> Score:
        return scoring.score_span(response, gold)
