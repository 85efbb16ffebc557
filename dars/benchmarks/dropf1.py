"""The DROP answer metric (exact match and F1), following the official evaluation's rules.

An answer is a list of spans. Each span is normalised token by token (tokens split on spaces and
hyphens; lower-cased; punctuation removed unless the token is a number; numbers rewritten as floats
so ``34`` = ``34.0``; articles dropped) and becomes a bag (set) of tokens. Predicted and gold bags
are paired one-to-one by the assignment that maximises total F1; a pair scores 0 when the gold bag
has numbers and none of them appears in the predicted bag. The answer's F1 is the mean over
max(#predicted, #gold) bags, rounded to 2 decimals. Against several accepted gold answers, the
maximum is taken.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
SPAN_SEPARATOR = "|"


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _normalize_token(token: str) -> str:
    token = token.lower()
    if not _is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCT)
    if _is_number(token):
        token = str(float(token))
    token = _ARTICLES.sub(" ", token)
    return " ".join(token.split())


def normalize_span(text: str) -> str:
    """One span, normalised the DROP way (see module docstring)."""
    tokens = (_normalize_token(t) for t in re.split(r" |-", text))
    return " ".join(t for t in tokens if t.strip()).strip()


def _bags(spans: Sequence[str]) -> tuple[list[str], list[set[str]]]:
    normalized = [normalize_span(s) for s in spans]
    return normalized, [set(n.split()) for n in normalized]


def _bag_f1(pred: set[str], gold: set[str]) -> float:
    common = len(pred & gold)
    precision = common / len(pred) if pred else 1.0
    recall = common / len(gold) if gold else 1.0
    if precision == 0.0 and recall == 0.0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _numbers_match(gold: set[str], pred: set[str]) -> bool:
    gold_numbers = {t for t in gold if _is_number(t)}
    return not gold_numbers or bool(gold_numbers & {t for t in pred if _is_number(t)})


def _aligned_f1(pred_bags: list[set[str]], gold_bags: list[set[str]]) -> list[float]:
    scores = np.zeros((len(gold_bags), len(pred_bags)))
    for i, g in enumerate(gold_bags):
        for j, p in enumerate(pred_bags):
            if _numbers_match(g, p):
                scores[i, j] = _bag_f1(p, g)
    rows, cols = linear_sum_assignment(-scores)
    best = np.zeros(max(len(gold_bags), len(pred_bags)))
    for r, c in zip(rows, cols, strict=True):
        best[r] = max(best[r], scores[r, c])
    return best.tolist()


def as_spans(answer: str | Sequence[str]) -> list[str]:
    """A span list from an answer: a sequence is taken as is; a string is split on ``|`` (how a
    multi-span answer is written in one line)."""
    if isinstance(answer, str):
        parts = [p.strip() for p in answer.split(SPAN_SEPARATOR)]
        parts = [p for p in parts if p]
        return parts or [answer.strip()]
    return [str(s) for s in answer]


def drop_em_f1(predicted: str | Sequence[str], gold: str | Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one predicted answer against one gold answer."""
    pred_norm, pred_bags = _bags(as_spans(predicted))
    gold_norm, gold_bags = _bags(as_spans(gold))
    em = float(set(pred_norm) == set(gold_norm) and len(pred_norm) == len(gold_norm))
    f1 = round(float(np.mean(_aligned_f1(pred_bags, gold_bags))), 2)
    return em, f1


def drop_max_em_f1(
    predicted: str | Sequence[str], golds: Iterable[str | Sequence[str]]
) -> tuple[float, float]:
    """Best (exact match, F1) over the accepted gold answers (each maximised separately)."""
    best_em, best_f1 = 0.0, 0.0
    seen = False
    for g in golds:
        seen = True
        em, f1 = drop_em_f1(predicted, g)
        best_em, best_f1 = max(best_em, em), max(best_f1, f1)
    if not seen:
        raise ValueError("no gold answers to score against")
    return best_em, best_f1
