"""A user's own benchmark file, registered as ``jsonl`` and ``parquet`` (one loader for both).

File: ``.jsonl`` (``.jsonl.gz``, ``.json`` list) or ``.parquet``, one question per row/line:

=============  ========  ==========================================================================
field          required  meaning
=============  ========  ==========================================================================
question       yes       the question text (for mc: the stem, without the options)
answer         one of    mc: the correct option's letter (A, B, …) or its exact text;
answers        these     math: the answer (LaTeX or a number); span: one accepted answer, or
                         ``answers``: a list of accepted answers (span; a one-element list is fine
                         for mc/math). A multi-span answer is one string "span1 | span2".
query_id       no        stable id; default "local-" + sha256(question, context, choices)
context        no        a passage the question refers to (kept fixed by rewrites)
choices        no        list of ≥ 2 option texts, in display order → multiple choice
task_type      no        a registered task type (mc | math | span built in); inferred when
                         absent: choices → mc, context or an ``answers`` list → span, otherwise
                         math
=============  ========  ==========================================================================

All rows of a file share one task type. ``choices`` are required by task types with options
(mc) and refused by the others; ``answers`` may hold several answers only for task types with
several accepted answers (span); the task type turns the answer(s) into the gold (mc: a letter or
an option's text → the letter). A malformed row raises ``BenchmarkDataError`` naming the file, the
row (the line number for JSONL) and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dars.benchmarks.base import (
    TASK_TYPES,
    Benchmark,
    BenchmarkDataError,
    BenchmarkUnavailableError,
    Item,
    Score,
    TaskType,
    get_task_type,
    register_benchmark,
)
from dars.benchmarks.sources import read_rows, row_number

FIELDS = ("query_id", "question", "context", "choices", "answer", "answers", "task_type")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _row_item(row: dict[str, Any], where: str, forced: str | None) -> Item:
    def bad(field: str, why: str) -> BenchmarkDataError:
        return BenchmarkDataError(f"{where}: field {field!r} {why}")

    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad("question", "is missing or empty (a non-empty string is required)")
    context = row.get("context")
    if context is not None and not isinstance(context, str):
        raise bad("context", f"must be a string, got {type(context).__name__}")
    context = context.strip() if context and context.strip() else None

    choices = row.get("choices")
    if choices is not None:
        if isinstance(choices, str) or not hasattr(choices, "__iter__"):
            raise bad("choices", "must be a list of option texts")
        choices = [_text(c) for c in choices]
        if len(choices) < 2 or any(c is None for c in choices):
            raise bad("choices", "must hold at least 2 non-empty option texts")
        if len(choices) > 26:
            raise bad("choices", "has more than 26 options")

    answers = row.get("answers")
    if answers is not None:
        if isinstance(answers, str) or not hasattr(answers, "__iter__"):
            raise bad("answers", "must be a list of accepted answers")
        answers = [_text(a) for a in answers]
        if not answers or any(a is None for a in answers):
            raise bad("answers", "must be a non-empty list of non-empty answers")
    answer = _text(row.get("answer"))
    if answer is None and answers is None:
        raise bad("answer", "is missing (give 'answer' or a list 'answers')")
    if answer is not None and answers is not None:
        raise bad("answers", "given together with 'answer'; use one of them")

    task_type = _text(row.get("task_type")) or forced
    if task_type is None:
        if choices is not None:
            task_type = "mc"
        elif context is not None or answers is not None:
            task_type = "span"
        else:
            task_type = "math"
    if task_type not in TASK_TYPES:
        raise bad("task_type", f"is {task_type!r}; allowed values: {', '.join(TASK_TYPES.names())}")
    task = get_task_type(task_type)

    if task.has_choices and choices is None:
        raise bad("choices", f"is required for task_type {task_type!r}")
    if not task.has_choices and choices is not None:
        with_choices = ", ".join(repr(n) for n, t in TASK_TYPES.items() if t.has_choices)
        raise bad("choices", f"is only allowed for task_type {with_choices}")
    given = tuple(answers) if answers is not None else (answer,)
    if not task.several_answers and len(given) != 1:
        raise bad("answers", f"must hold exactly one answer for task_type {task_type!r}")
    try:
        gold = task.gold_from_answers(given, choices)
    except ValueError as err:
        raise bad("answer" if answer is not None else "answers", str(err)) from None

    qid = _text(row.get("query_id"))
    if qid is None:
        content = json.dumps([question.strip(), context, choices], ensure_ascii=False)
        qid = "local-" + hashlib.sha256(content.encode()).hexdigest()[:16]
    extra = {k: v for k, v in row.items() if k not in FIELDS and k != "__row__"}
    return Item(
        query_id=qid,
        question=question.strip(),
        gold=gold,
        task_type=task_type,
        context=context,
        choices=tuple(choices) if choices is not None else None,
        meta={k: v for k, v in extra.items() if isinstance(v, str | int | float | bool)},
    )


def items_from_rows(
    rows: list[dict[str, Any]], source: str | Path, task_type: str | None = None
) -> list[Item]:
    """Items from the rows of a local file; see the module docstring for the schema."""
    if not rows:
        raise BenchmarkDataError(f"{source}: no rows")
    items: list[Item] = []
    first_row: dict[str, int] = {}
    for i, row in enumerate(rows):
        n = row_number(row, i)
        item = _row_item(row, f"{source}: row {n}", task_type)
        if items and item.task_type != items[0].task_type:
            raise BenchmarkDataError(
                f"{source}: row {n}: field 'task_type' is {item.task_type!r} but row "
                f"{row_number(rows[0], 0)} is {items[0].task_type!r}; one file holds one task type"
            )
        if item.query_id in first_row:
            raise BenchmarkDataError(
                f"{source}: row {n}: field 'query_id' {item.query_id!r} repeats row "
                f"{first_row[item.query_id]}"
            )
        first_row[item.query_id] = n
        items.append(item)
    return items


@register_benchmark("jsonl")
@register_benchmark("parquet")
class LocalFile(Benchmark):
    """A user's file (``path`` required). Option ``task_type`` forces the task type of rows that
    do not state one; otherwise it is inferred and known after ``load``."""

    default_options = {"task_type": None}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        forced = self.options["task_type"]
        if forced is not None and forced not in TASK_TYPES:
            raise ValueError(
                f"option task_type={forced!r}; allowed values: {', '.join(TASK_TYPES.names())}"
            )
        self.task_type = forced  # None until known

    def load(
        self, path: str | Path | None = None, *, cache_dir: str | Path | None = None
    ) -> list[Item]:
        if path is None:
            raise BenchmarkUnavailableError(
                f"benchmark {self.name!r} reads your own file: pass path=/path/to/file "
                "(.jsonl or .parquet; in an experiment YAML set `path:` on the benchmark entry)"
            )
        items = items_from_rows(read_rows(path), Path(path), self.options["task_type"])
        self.task_type = items[0].task_type
        return items

    def task_type_for(self, item: Item | None = None) -> TaskType:
        """The item's own task type (rows state or imply theirs); without an item, the file's
        (known after ``load`` or from the option ``task_type``)."""
        if item is not None:
            return get_task_type(item.task_type)
        if self.task_type is None:
            raise ValueError(
                f"benchmark {self.name!r}: task type unknown before load(); pass the option "
                "task_type or score with score(response, item)"
            )
        return get_task_type(self.task_type)

    def score_answer(self, response: str, gold: Any) -> Score:
        if self.task_type is None and isinstance(gold, tuple | list):
            # Several accepted answers: a span gold, as inferred from a row with `answers`.
            return get_task_type("span").score_answer(response, gold)
        return super().score_answer(response, gold)
