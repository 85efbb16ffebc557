"""Decode and rewrite prompts, and parsing of the rewriter's answer.

Decode prompts end with the instruction to put the answer on a last line ``Final Answer: …`` (the
scorers look for it). Rewrite prompts ask for a JSON array of exactly n strings, each a rewritten
question; what may change depends on the task type:

- mc: only the question stem is rewritten; the options are shown unchanged at decode time.
- math: every number, condition and the requested quantity are kept.
- span: only the question is rewritten; the passage stays fixed.

In all cases the gold answer must stay the same. ``parse_rewrites`` reads that JSON array back.
"""

from __future__ import annotations

import json
import re

from dars.benchmarks.base import Item
from dars.benchmarks.parsing import choice_letters

FINAL_LINE = "Final Answer:"

_DECODE_SYSTEM = (
    "You are a careful problem solver. Reason as briefly as the problem allows, then give your "
    f"answer on the last line in the form '{FINAL_LINE} <answer>'."
)


def format_choices(choices: tuple[str, ...] | list[str]) -> str:
    """Options as lines ``A) …``, in display order."""
    letters = choice_letters(len(choices))
    return "\n".join(f"{letter}) {text}" for letter, text in zip(letters, choices, strict=True))


def _require(item: Item, task_type: str) -> None:
    if item.task_type != task_type:
        raise ValueError(
            f"item {item.query_id!r} has task_type {item.task_type!r}, not {task_type}"
        )


def mc_decode_messages(item: Item, question: str | None = None) -> list[dict[str, str]]:
    """Question (or its rewrite) + lettered options; answer one letter."""
    _require(item, "mc")
    if not item.choices:
        raise ValueError(f"multiple-choice item {item.query_id!r} has no choices")
    letters = choice_letters(len(item.choices))
    listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    user = (
        "Answer the following multiple-choice question.\n\n"
        f"Question: {question if question is not None else item.question}\n\n"
        f"{format_choices(item.choices)}\n\n"
        f"End your response with a line of the form '{FINAL_LINE} X' where X is one letter "
        f"({listed})."
    )
    return [{"role": "system", "content": _DECODE_SYSTEM}, {"role": "user", "content": user}]


def math_decode_messages(item: Item, question: str | None = None) -> list[dict[str, str]]:
    """Problem (or its rewrite); the last line holds only the final result."""
    _require(item, "math")
    user = (
        "Solve the following math problem.\n\n"
        f"Problem: {question if question is not None else item.question}\n\n"
        f"End your response with a line of the form '{FINAL_LINE} <result>' containing only the "
        "final result (a number or a simplified LaTeX expression), without units or words."
    )
    return [{"role": "system", "content": _DECODE_SYSTEM}, {"role": "user", "content": user}]


def span_decode_messages(item: Item, question: str | None = None) -> list[dict[str, str]]:
    """Passage + question (or its rewrite); answer from the passage."""
    _require(item, "span")
    passage = f"Passage: {item.context}\n\n" if item.context else ""
    user = (
        "Read the passage and answer the question using the information in it.\n\n"
        f"{passage}Question: {question if question is not None else item.question}\n\n"
        "Answer with a number when the question asks for a number or a count, otherwise with the "
        "exact words from the passage; when several items are asked for, separate them with ' | '. "
        f"End your response with a line of the form '{FINAL_LINE} <answer>'."
    )
    return [{"role": "system", "content": _DECODE_SYSTEM}, {"role": "user", "content": user}]


def decode_messages(item: Item, question: str | None = None) -> list[dict[str, str]]:
    """Decode prompt for any item, chosen by its task type."""
    builders = {
        "mc": mc_decode_messages,
        "math": math_decode_messages,
        "span": span_decode_messages,
    }
    try:
        build = builders[item.task_type]
    except KeyError:
        raise ValueError(
            f"item {item.query_id!r}: unknown task_type {item.task_type!r}; allowed: mc, math, span"
        ) from None
    return build(item, question)


_REWRITE_SYSTEM = (
    "You rewrite benchmark questions. A rewrite keeps the exact meaning, so the correct answer "
    "stays exactly the same; it changes wording, sentence structure and order of phrases only. "
    "Never add hints, never solve the problem, never drop or change information."
)

_REWRITE_RULES = {
    "mc": (
        "Rewrite only the question stem below. The answer options will be shown unchanged after "
        "your rewrite, so do not include, reorder, or refer to them by letter, and keep every "
        "technical term, quantity and condition of the stem."
    ),
    "math": (
        "Rewrite the problem below. Keep every number, variable, expression (LaTeX as written), "
        "condition and constraint, and ask for exactly the same quantity in the same form (same "
        "units, same rounding, same way of expressing the answer)."
    ),
    "span": (
        "Rewrite only the question below. The passage is shown for context and stays fixed; the "
        "rewritten question must have the same answer in the passage, asked for in the same form "
        "(a number stays a number, a name stays a name)."
    ),
}


def rewrite_messages(item: Item, n: int) -> list[dict[str, str]]:
    """Ask the rewriter for ``n`` meaning-preserving rewrites of the item's question, returned
    as a JSON array of exactly ``n`` strings (read back with ``parse_rewrites``)."""
    if n < 1:
        raise ValueError(f"number of rewrites must be >= 1, got {n}")
    try:
        rules = _REWRITE_RULES[item.task_type]
    except KeyError:
        raise ValueError(
            f"item {item.query_id!r}: unknown task_type {item.task_type!r}; allowed: mc, math, span"
        ) from None
    parts = [rules, ""]
    if item.task_type == "span" and item.context:
        parts += [f"Passage (do not rewrite): {item.context}", ""]
    parts += [f"Question: {item.question}", ""]
    if item.task_type == "mc" and item.choices:
        parts += ["Answer options (do not rewrite, do not include):", format_choices(item.choices)]
        parts += [""]
    parts.append(
        f"Return only a JSON array of exactly {n} strings, each one complete rewritten question, "
        f'for example ["…", "…"]. No other text.'
    )
    return [
        {"role": "system", "content": _REWRITE_SYSTEM},
        {"role": "user", "content": "\n".join(parts)},
    ]


_FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def parse_rewrites(text: str, n: int) -> list[str]:
    """The ``n`` rewrites in the rewriter's answer: a JSON array of strings, possibly inside a
    ```json fence or surrounded by prose. Surrounding whitespace is stripped; extra strings beyond
    ``n`` are dropped. Raises ValueError (saying what was found) when there is no JSON array,
    an element is not a string, or fewer than ``n`` non-empty strings."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text or "")] + [text or ""]
    errors: list[str] = []
    decoder = json.JSONDecoder()
    for cand in candidates:
        start = cand.find("[")
        if start < 0:
            errors.append("no JSON array")
            continue
        try:
            # raw_decode stops at the end of the array, so prose after it (even with brackets)
            # does not matter.
            value, _ = decoder.raw_decode(cand, start)
        except json.JSONDecodeError as e:
            errors.append(f"invalid JSON array ({e.msg} at char {e.pos})")
            continue
        if not isinstance(value, list):
            errors.append("JSON value is not an array")
            continue
        bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
        if bad:
            errors.append(f"array element {bad[0]} is {type(value[bad[0]]).__name__}, not a string")
            continue
        rewrites = [v.strip() for v in value if v.strip()]
        if len(rewrites) < n:
            errors.append(f"{len(rewrites)} non-empty strings, expected {n}")
            continue
        return rewrites[:n]
    snippet = (text or "").strip().replace("\n", " ")[:120]
    raise ValueError(
        f"cannot read {n} rewrites from rewriter output ({'; '.join(dict.fromkeys(errors))}): "
        f"{snippet!r}"
    )
