"""DROP EM/F1: official-rule cases and a brute-force reference for the span alignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.benchmarks.dropf1 import (
    _bag_f1,
    _numbers_match,
    as_spans,
    drop_em_f1,
    drop_max_em_f1,
    normalize_span,
)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Browns", "browns"),
        ("34", "34.0"),
        ("34.0", "34.0"),
        ("a 38-yard field goal!", "38.0 yard field goal"),
        ("U.S. Army", "us army"),
        ("1,000 people", "1000.0 people"),
        ("  An   apple ", "apple"),
    ],
)
def test_normalize_span(text, normalized):
    assert normalize_span(text) == normalized


def test_em_and_f1_by_hand():
    assert drop_em_f1("the Browns", "Browns") == (1.0, 1.0)
    # one predicted bag {3.0, touchdowns} vs gold {3.0}: P = 1/2, R = 1, F1 = 2/3
    assert drop_em_f1("3 touchdowns", "3") == (0.0, 0.67)
    # gold has a number the prediction lacks: 0 even with overlapping words
    assert drop_em_f1("4 yards", "3 yards") == (0.0, 0.0)
    # two gold spans, one predicted: mean over max(1, 2) bags
    assert drop_em_f1(["Paris"], ["Paris", "Rome"]) == (0.0, 0.5)
    assert drop_em_f1(["Rome", "Paris"], ["Paris", "Rome"]) == (1.0, 1.0)
    assert drop_max_em_f1("Rome", ["Paris", "Rome"]) == (1.0, 1.0)


def test_as_spans_splits_on_bar():
    assert as_spans("a | b|c") == ["a", "b", "c"]
    assert as_spans(["x|y"]) == ["x|y"]  # a list is taken as given
    assert as_spans("|") == ["|"]


def test_max_needs_a_gold():
    with pytest.raises(ValueError, match="no gold"):
        drop_max_em_f1("x", [])


def _reference_f1(pred: list[str], gold: list[str]) -> float:
    """Slow obvious reference: try every one-to-one pairing of padded bag lists."""
    pb = [set(normalize_span(s).split()) for s in pred]
    gb = [set(normalize_span(s).split()) for s in gold]
    n = max(len(pb), len(gb))

    def pair_score(g: set[str] | None, p: set[str] | None) -> float:
        if g is None or p is None:
            return 0.0
        return _bag_f1(p, g) if _numbers_match(g, p) else 0.0

    gpad = gb + [None] * (n - len(gb))
    ppad = pb + [None] * (n - len(pb))
    best = max(
        sum(pair_score(gpad[i], ppad[j]) for i, j in enumerate(perm))
        for perm in itertools.permutations(range(n))
    )
    return round(best / n, 2)


WORDS = st.sampled_from(["red", "blue", "the", "3", "3.0", "7", "cat", "dog", "a", "big-red", "x."])
SPAN = st.lists(WORDS, min_size=1, max_size=4).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(SPAN, min_size=1, max_size=4), st.lists(SPAN, min_size=1, max_size=4))
def test_alignment_matches_brute_force(pred, gold):
    em, f1 = drop_em_f1(pred, gold)
    assert f1 == pytest.approx(_reference_f1(pred, gold))
    assert 0.0 <= f1 <= 1.0 and em in (0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(SPAN, min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_span_order_does_not_matter_and_self_is_perfect(spans, rnd):
    shuffled = list(spans)
    rnd.shuffle(shuffled)
    assert drop_em_f1(shuffled, spans) == drop_em_f1(spans, spans)
    _, f1 = drop_em_f1(spans, spans)
    # a span of only articles/punctuation normalises to an empty bag; others match themselves
    if all(normalize_span(s) for s in spans):
        assert f1 == 1.0
    assert np.isfinite(f1)
