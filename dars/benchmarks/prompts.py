"""Decode and rewrite prompts: the pieces every task type shares, and reading the rewrites.

Decode prompts are a fixed system message (reason briefly, answer on a last line ``Final
Answer: …``, which the scorers look for) and a user message written by the item's task type
(``dars.benchmarks.task_types``). Rewrite prompts are a fixed system message (keep the meaning,
so the gold answer stays the same) and a user message: the task type's rules of what may change,
the question with the parts that stay fixed (options, passage), and the request for a JSON array
of exactly n strings, each a rewritten question. ``parse_rewrites`` reads that array back.

``decode_messages`` / ``rewrite_messages`` render any item through its task type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from dars.benchmarks.base import Item, task_type_of
from dars.benchmarks.parsing import FINAL_LINE, choice_letters

__all__ = [
    "DECODE_SYSTEM",
    "FINAL_LINE",
    "REWRITE_SYSTEM",
    "decode_chat",
    "decode_messages",
    "format_choices",
    "parse_rewrites",
    "rewrite_chat",
    "rewrite_messages",
]

DECODE_SYSTEM = (
    "You are a careful problem solver. Reason as briefly as the problem allows, then give your "
    f"answer on the last line in the form '{FINAL_LINE} <answer>'."
)

REWRITE_SYSTEM = (
    "You rewrite benchmark questions. A rewrite keeps the exact meaning, so the correct answer "
    "stays exactly the same; it changes wording, sentence structure and order of phrases only. "
    "Never add hints, never solve the problem, never drop or change information."
)


def format_choices(choices: Sequence[str]) -> str:
    """Options as lines ``A) …``, in display order."""
    letters = choice_letters(len(choices))
    return "\n".join(f"{letter}) {text}" for letter, text in zip(letters, choices, strict=True))


def decode_chat(user: str) -> list[dict[str, str]]:
    """The decode messages around a task type's user message (which ends by asking for the
    ``Final Answer:`` line in the task's form)."""
    return [{"role": "system", "content": DECODE_SYSTEM}, {"role": "user", "content": user}]


def check_rewrite_count(n: int) -> None:
    if n < 1:
        raise ValueError(f"number of rewrites must be >= 1, got {n}")


def rewrite_chat(rules: str, body: Sequence[str], n: int) -> list[dict[str, str]]:
    """The rewrite messages: the task type's ``rules``, then its ``body`` lines (the question and
    the parts that stay fixed, each block followed by an empty line), then the request for a
    JSON array of exactly ``n`` strings."""
    check_rewrite_count(n)
    parts = [rules, "", *body]
    parts.append(
        f"Return only a JSON array of exactly {n} strings, each one complete rewritten question, "
        f'for example ["…", "…"]. No other text.'
    )
    return [
        {"role": "system", "content": REWRITE_SYSTEM},
        {"role": "user", "content": "\n".join(parts)},
    ]


def decode_messages(item: Item, question: str | None = None) -> list[dict[str, str]]:
    """Decode prompt for any item, rendered by its task type."""
    return task_type_of(item).decode_messages(item, question)


def rewrite_messages(item: Item, n: int) -> list[dict[str, str]]:
    """Ask the rewriter for ``n`` meaning-preserving rewrites of the item's question, returned
    as a JSON array of exactly ``n`` strings (read back with ``parse_rewrites``); the rules and
    fixed parts come from the item's task type."""
    check_rewrite_count(n)
    return task_type_of(item).rewrite_messages(item, n)


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
