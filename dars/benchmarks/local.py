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
task_type      no        mc | math | span; inferred when absent: choices → mc, context or an
                         ``answers`` list → span, otherwise math
=============  ========  ==========================================================================

All rows of a file share one task type. A malformed row raises ``BenchmarkDataError`` naming the
file, the row (the line number for JSONL) and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dars.benchmarks import prompts, scoring
from dars.benchmarks.base import (
    TASK_TYPES,
    Benchmark,
    BenchmarkDataError,
    BenchmarkUnavailableError,
    Item,
    Score,
    register_benchmark,
)
from dars.benchmarks.parsing import choice_letters
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
        raise bad("task_type", f"is {task_type!r}; allowed values: {', '.join(TASK_TYPES)}")

    single = answer if answer is not None else (answers[0] if len(answers) == 1 else None)
    if task_type == "mc":
        if choices is None:
            raise bad("choices", "is required for task_type 'mc'")
        if single is None:
            raise bad("answers", "must hold exactly one answer for task_type 'mc'")
        letters = choice_letters(len(choices))
        if len(single) == 1 and single.upper() in letters:
            gold: Any = single.upper()
        elif single in choices:
            gold = letters[choices.index(single)]
        else:
            field = "answer" if answer is not None else "answers"
            raise bad(field, f"is {single!r}: neither a letter in {letters} nor one of the choices")
    elif task_type == "math":
        if choices is not None:
            raise bad("choices", "is only allowed for task_type 'mc'")
        if single is None:
            raise bad("answers", "must hold exactly one answer for task_type 'math'")
        gold = single
    else:
        if choices is not None:
            raise bad("choices", "is only allowed for task_type 'mc'")
        gold = tuple(answers) if answers is not None else (answer,)

    qid = _text(row.get("query_id"))
    if qid is None:
        content = json.dumps([question.strip(), context, choices], ensure_ascii=False)
        qid = "local-" + hashlib.sha256(content.encode()).hexdigest()[:16]
    extra = {k: v for k, v in row.items() if k not in FIELDS and k != "__row__"}
    return Item(
        query_id=qid,
        question=question.strip(),
        gold=gold,
        task_type=task_type,  # type: ignore[arg-type]
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
                f"option task_type={forced!r}; allowed values: {', '.join(TASK_TYPES)}"
            )
        self.task_type = forced  # type: ignore[assignment]  # None until known

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

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        return prompts.decode_messages(item, question)

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        return prompts.rewrite_messages(item, n)

    def score_answer(self, response: str, gold: Any) -> Score:
        task_type = self.task_type
        if task_type is None:
            if not isinstance(gold, tuple | list):
                raise ValueError(
                    f"benchmark {self.name!r}: task type unknown before load(); pass the option "
                    "task_type or score with score(response, item)"
                )
            task_type = "span"
        return scoring.score_by_task(task_type, response, gold)

    def score(self, response: str, item: Item) -> Score:
        return scoring.score_by_task(item.task_type, response, item.gold, choices=item.choices)
