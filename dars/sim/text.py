"""Everything the simulated pool writes around an answer: reasoning filler, the lead-in sentence
before the final line, unparseable endings, paraphrases.

The world (:mod:`dars.sim.world`) decides *what* a decode is (correct, partial, wrong or
unparseable, and how long) and asks the item's task type (:class:`dars.benchmarks.base.TaskType`)
for the answer itself and its final line; this module decides how the rest reads. Every choice is
made from the world's deterministic draws passed in (a uniform ``u`` or a byte stream), so the
same call key always gives the same text. Functions here are pure.

The wording is per task type where the simulator has one (``mc``, ``math``, ``span``) and
generic otherwise, so a task type added as a plugin is simulated without editing this module.
An unparseable ending has no final-answer line, box or standalone capital letter at all, so no
built-in scorer can read an answer from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dars.benchmarks.base import TaskType


# --------------------------------------------------------------------------------------------
# endings and reasoning

# The sentence before the final line, by task type; ``{answer}`` is the answer given.
_LEAD_INS = {
    "mc": "Comparing the options, option {answer} is the most consistent.",
    "math": "Putting the pieces together gives the result.",
    "span": "The passage states this directly.",
}
# For a task type not listed above: no answer in it, so it cannot clash with any answer format.
_GENERIC_LEAD_IN = "Putting everything together gives the following."


def ending(task: TaskType, answer: str) -> str:
    """The last lines of a decode giving ``answer``: a lead-in sentence (the task type's, or a
    generic one for a task type the simulator has none for), then ``task.final_line(answer)``."""
    lead = _LEAD_INS.get(task.name, _GENERIC_LEAD_IN).format(answer=answer)
    return f"{lead}\n{task.final_line(answer)}"


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

# Filler of a task type not in _FILLER: no digits, no standalone capital letter, no answer-like
# phrase, so it cannot be read as an answer by any scorer that reads the final line or a box.
_GENERIC_FILLER = [
    "Let me restate what the question asks for.",
    "The key facts are given in the question itself.",
    "Working through it one step at a time keeps the reasoning clear.",
    "Each step should follow from the one before it.",
    "Checking the reasoning once more avoids a careless mistake.",
    "Now combine the pieces into one result.",
]

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
    """Reasoning filler sentences of the task type (generic ones for a task type the simulator
    has none for), chosen by the key's byte stream ``draws``, until the text reaches about
    ``target_chars``, then ``ending``."""
    pool = _FILLER.get(task_type, _GENERIC_FILLER)
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
