"""Math equivalence: normalisation, the fast paths, and math-verify off the main thread."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import pytest

from dars.benchmarks import mathequiv
from dars.benchmarks.mathequiv import (
    canonical_math_string,
    math_equal,
    normalize_math_answer,
    simple_number,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\left( 3, \\pi \\right)", "( 3, \\pi )"),
        ("1,000", "1000"),
        ("(1,000, 2)", "(1,000, 2)"),  # not a plain number: commas kept
        ("x = 3", "3"),
        ("10\\text{ cm}", "10"),
        ("\\text{Evelyn}", "Evelyn"),
        ("90^\\circ", "90"),
        ("\\$18.90", "18.90"),
        ("50\\%", "50"),
        (".5", "0.5"),
        ("12.", "12"),
    ],
)
def test_normalize(raw, normalized):
    assert normalize_math_answer(raw) == normalized


def test_simple_number():
    assert simple_number("42") == (Fraction(42), True)
    assert simple_number("-0.25") == (Fraction(-1, 4), False)
    assert simple_number("\\frac{3}{4}") == (Fraction(3, 4), True)
    assert simple_number("-\\frac{3}{4}") == (Fraction(-3, 4), True)
    assert simple_number("3/0") is None
    assert simple_number(canonical_math_string("\\sqrt{2}")) is None


def test_plain_numbers_never_reach_math_verify(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("math-verify called for plain numbers")

    monkeypatch.setattr(mathequiv, "_verify", boom)
    assert math_equal("10.0", "10")
    assert math_equal("\\dfrac{1}{2}", "0.5")
    assert not math_equal("7", "8")
    assert not math_equal("\\frac{1}{3}", "\\frac{1}{4}")


def test_empty_prediction_is_not_equal():
    assert not math_equal("", "0")
    assert not math_equal("   ", "0")


def _in_thread(fn):
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(120)
    assert out, "thread did not finish"
    return out[0]


def test_symbolic_equivalence_works_off_the_main_thread():
    # math-verify's signal alarms fail outside the main thread; the worker process path must not.
    assert _in_thread(lambda: math_equal("\\sqrt{8}", "2\\sqrt{2}"))
    assert not _in_thread(lambda: math_equal("x^2", "x^3"))


def test_pathological_input_is_bounded_off_the_main_thread():
    start = time.monotonic()
    result = _in_thread(lambda: math_equal("10^{10^{10}}", "5", timeout_s=1))
    assert result is False
    assert time.monotonic() - start < 30


def test_inline_mode_runs_without_workers(monkeypatch):
    monkeypatch.setenv(mathequiv.THREAD_MODE_ENV, "inline")
    monkeypatch.setattr(mathequiv, "_pool", lambda: pytest.fail("worker pool used in inline mode"))
    assert _in_thread(lambda: math_equal("\\sqrt{8}", "2\\sqrt{2}"))


def test_bad_thread_mode_is_rejected(monkeypatch):
    monkeypatch.setenv(mathequiv.THREAD_MODE_ENV, "bogus")
    with pytest.raises(ValueError, match="allowed values: process, inline"):
        _in_thread_raising(lambda: math_equal("\\sqrt{8}", "2\\sqrt{2}"))


def _in_thread_raising(fn):
    errors: list[BaseException] = []

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if errors:
        raise errors[0]
