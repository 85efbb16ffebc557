"""Everything the simulated pool writes: reasoning filler, answers and endings, paraphrases.

The world (:mod:`dars.sim.world`) decides *what* a decode is (correct, partial, wrong or
unparseable, and how long); this module decides how it reads. Every choice is made from the
world's deterministic draws passed in (a uniform ``u`` or a byte stream), so the same call key
always gives the same text. Functions here are pure and uncached; the world caches the per-item
ones (:func:`partial_answer`, :func:`wrong_span`).

Each text must score as intended under the benchmark's real scorer: a correct ending scores 1, a
partial span answer strictly between 0 and 1 (its DROP F1), a wrong one 0, and an unparseable
ending has no final-answer line, box or standalone capital letter at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dars.benchmarks.base import Item

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def gold_text(item: Item) -> str:
    """The gold answer as one string (a span item's first gold)."""
    if item.task_type == "span":
        gold = item.gold
        if isinstance(gold, str):
            return gold
        return str(list(gold)[0])
    return str(item.gold)


_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_STOP = {"that", "this", "with", "from", "were", "have", "their", "which", "there", "they", "than"}


# --------------------------------------------------------------------------------------------
# answers


def partial_answer(item: Item) -> tuple[str | None, float]:
    """The span partial-credit answer of an item and its DROP F1 against the gold
    ((None, 0.0) when the item is not a span item or has no answer scoring strictly between
    0 and 1): the first part of a multi-span gold, else the gold plus a passage word."""
    if item.task_type != "span":
        return None, 0.0
    from dars.benchmarks.dropf1 import drop_max_em_f1

    golds = [item.gold] if isinstance(item.gold, str) else list(item.gold)
    gold = gold_text(item)
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


#: Wrong span answers per item: ``wrong_span``'s ``bucket`` is in ``range(WRONG_SPAN_VARIANTS)``.
WRONG_SPAN_VARIANTS = 16


def wrong_span(item: Item, bucket: int) -> str:
    """Wrong span answer number ``bucket`` of an item: a plausible one (a nearby number or
    another passage word) that scores 0 under DROP F1."""
    from dars.benchmarks.dropf1 import drop_max_em_f1

    golds = [item.gold] if isinstance(item.gold, str) else list(item.gold)
    gold = gold_text(item)
    cands: list[str] = []
    nums = _NUM_RE.findall(gold)
    if nums:
        base = float(nums[0])
        step = 1 + bucket % 5
        cands += [_fmt_num(base + step), _fmt_num(base - step), _fmt_num(base + 10 * step)]
    words = [w for w in _WORD_RE.findall(item.context or "") if w.lower() not in _STOP]
    if words:
        start = bucket * len(words) // WRONG_SPAN_VARIANTS
        cands += [words[(start + j) % len(words)] for j in range(min(6, len(words)))]
    cands += ["unknown", "none of them", "17"]
    return next((c for c in cands if drop_max_em_f1(c, golds)[1] == 0.0), "unclear")


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def wrong_math(gold: str, u: float) -> str:
    """A plausible wrong answer: a nearby integer/decimal for numeric golds, else gold + 1
    (never equivalent to the gold expression)."""
    g = gold.strip()
    if re.fullmatch(r"-?\d+", g.replace(",", "")):
        v = int(g.replace(",", ""))
        delta = [1, -1, 2, v if v else 3, -2, 10][int(u * 6)]
        return str(v + delta if delta else v + 1)
    if re.fullmatch(r"-?\d*\.\d+", g):
        return f"{float(g) + [1, -1, 0.5, 2][int(u * 4)]:g}"
    return f"{g}+1"


# --------------------------------------------------------------------------------------------
# endings and reasoning


def ending(
    item: Item,
    kind: str,
    u: float,
    *,
    partial: Callable[[], str | None],
    wrong_span: Callable[[float], str],
) -> str:
    """The last lines of a decode of outcome ``kind`` (``correct``, ``partial`` or ``wrong``):
    a task-type sentence, then ``Final Answer: …``.

    ``u`` is the decode's uniform draw that picks a wrong answer; a span item's partial answer
    and wrong answers come from ``partial()`` and ``wrong_span(u)`` (the world's cached
    :func:`partial_answer` and :func:`wrong_span`).
    """
    gold = gold_text(item)
    t = item.task_type
    if t == "mc":
        n = len(item.choices or ()) or 4
        letters = _LETTERS[:n]
        gold_letter = gold.strip().upper()
        if kind == "correct":
            letter = gold_letter
        else:
            others = [x for x in letters if x != gold_letter] or [gold_letter]
            letter = others[int(u * len(others))]
        return (
            f"Comparing the options, option {letter} is the most consistent.\n"
            f"Final Answer: {letter}"
        )
    if t == "math":
        answer = gold if kind == "correct" else wrong_math(gold, u)
        return f"Putting the pieces together gives the result.\nFinal Answer: {answer}"
    if kind == "correct":
        answer = gold
    elif kind == "partial":
        answer = partial() or gold
    else:
        answer = wrong_span(u)
    return f"The passage states this directly.\nFinal Answer: {answer}"


def unparseable_ending(u: float) -> str:
    """An ending no scorer can parse, picked by the uniform draw ``u``."""
    return _UNPARSEABLE[int(u * len(_UNPARSEABLE))]


_FILLER = {
    "mc": [
        "First, restate what the question is really asking.",
        "The key quantity here depends on the underlying mechanism described.",
        "Recall the relevant principle and check whether its assumptions hold.",
        "Several options look similar, so compare them on the critical detail.",
        "One option can be ruled out because it contradicts a basic constraint.",
        "Consider the limiting case to see which behaviour is expected.",
        "The wording suggests a subtle distinction between two concepts.",
        "Checking units and orders of magnitude helps eliminate distractors.",
        "Now weigh the remaining candidates against the stated conditions.",
    ],
    "math": [
        "Let me set up the problem carefully.",
        "Introduce a variable for the unknown quantity and write the given relation.",
        "Simplifying the expression step by step keeps the algebra manageable.",
        "Substituting the known values into the equation gives a smaller problem.",
        "Checking the boundary cases confirms the pattern continues.",
        "Factoring the expression reveals the structure of the solution.",
        "We should double-check the arithmetic in the previous step.",
        "The constraint rules out the negative solution.",
        "Combining the two equations eliminates one of the variables.",
    ],
    "span": [
        "Let me find the relevant part of the passage.",
        "The question refers to a specific event in the passage.",
        "Scanning the passage for the named entities narrows it down.",
        "The relevant sentence mentions the quantity being asked about.",
        "Counting the occurrences carefully avoids an off-by-one mistake.",
        "Cross-checking with the surrounding sentences confirms the reading.",
    ],
}

# Endings without a final-answer line, a box, or a standalone capital letter (the multiple-choice
# scorer's last resort would read one as an option).
_UNPARSEABLE = [
    "More care is needed before committing to a result, since two readings of the question "
    "seem possible.",
    "Unfortunately the reasoning above does not settle the question conclusively.",
    "There seems to be an inconsistency in the derivation, so it is best to start over from the "
    "beginning and reconsider every step",
]


def pad_reasoning(task_type: str, ending: str, target_chars: int, draws: Iterator[int]) -> str:
    """Reasoning filler sentences (chosen by the key's byte stream ``draws``) until the text
    reaches about ``target_chars``, then ``ending``."""
    pool = _FILLER[task_type]
    parts: list[str] = []
    length = len(ending)
    while True:
        s = pool[next(draws) % len(pool)]
        # Stop at the sentence boundary nearest the target, so lengths are unbiased.
        if length + (len(s) + 1) / 2 > target_chars:
            break
        parts.append(s)
        length += len(s) + 1
    parts.append(ending)
    return "\n".join(parts) if len(parts) <= 2 else " ".join(parts[:-1]) + "\n" + parts[-1]


# --------------------------------------------------------------------------------------------
# paraphrases (the simulated rewriter)

_PREFIXES = [
    "",
    "Please answer the following. ",
    "Consider this question. ",
    "Here is a question for you. ",
    "Think carefully about this: ",
    "Question to solve: ",
]
_SUFFIXES = ["", " Answer carefully.", " Give a precise answer.", " Take care with the details."]
# (question opening, imperative replacement): applied only at the start of a one-sentence
# question, whose final "?" then becomes "." so the rewrite stays grammatical.
_IMPERATIVES = [
    ("What is ", "Determine "),
    ("How many ", "Count how many "),
    ("Find ", "Compute "),
    ("Which ", "Say which "),
    ("Who ", "Identify who "),
]


def _imperative(q: str) -> str | None:
    if q.count("?") != 1 or not q.endswith("?") or any(c in q[:-1] for c in ".!"):
        return None
    for opening, repl in _IMPERATIVES:
        if q.startswith(opening):
            return repl + q[len(opening) : -1] + "."
    return None


def paraphrases(question: str, n: int, u: Callable[..., float], query_id: str) -> list[str]:
    """``n`` distinct template rewrites of ``question``: an optional lead-in, an optional
    imperative form of a one-sentence question (``What is …?`` → ``Determine ….``) and an
    optional closing request. Digits, LaTeX, choices and passages are never touched.
    ``u(*parts)`` is the world's uniform draw, used to pick and order the templates."""
    q = question.strip()
    bodies = [q]
    imp = _imperative(q)
    if imp is not None:
        bodies.append(imp)
    variants: list[str] = []
    for body in bodies:
        for pre in _PREFIXES:
            for suf in _SUFFIXES:
                text = (pre + body).rstrip() + suf
                if text != q and text not in variants:
                    variants.append(text)
    variants.sort(key=lambda v: u(query_id, v))
    out = variants[:n]
    k = 2
    while len(out) < n:  # more rewrites asked for than templates: number the extra ones
        out.append(f"{variants[(k - 2) % len(variants)]} (version {k})")
        k += 1
    return out
