"""Math answer equivalence: a cheap canonical-string check, then ``math_verify``.

``math_equal(pred, gold)`` is what the MATH scorer calls. It agrees with the PRM800K grader on the
usual forms (``10`` = ``10.0``, ``\\dfrac{1}{2}`` = ``0.5``, ``1,000`` = ``1000``,
``x = 3`` = ``3``, units in ``\\text{}``, ``\\text{Evelyn}`` = ``Evelyn``) and defers everything
symbolic to math-verify.

Threads: math-verify bounds parsing and comparison with ``signal.alarm``, which only works in the
main thread; called from a Prefect worker thread it raises. Without a bound, inputs such as
``10^{10^{10}}`` hang sympy for ever, so off the main thread the comparison runs in a small pool of
worker subprocesses (each runs math-verify in its own main thread, with its own alarms) and a hard
deadline kills a worker that still does not answer. Most answers never get there: plain numbers and
identical canonical strings are decided in the calling thread.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5
# Worker subprocesses used off the main thread; "inline" runs math-verify without any timeout in
# the calling thread instead (only for environments that cannot start subprocesses).
THREAD_MODE_ENV = "DARS_MATH_VERIFY_THREAD_MODE"
WORKERS_ENV = "DARS_MATH_WORKERS"

_UNIT_WORDS = r"[A-Za-z][A-Za-z\s.^{}0-9/]*"


def normalize_math_answer(s: str) -> str:
    """Light, meaning-preserving clean-up of a math answer (spaces kept so LaTeX still parses):
    ``\\dfrac``→``\\frac``, no ``\\left``/``\\right``/thin spaces/``$``/degrees/percent/dollar
    signs, a trailing unit in ``\\text{}`` dropped after a number, other ``\\text{x}`` unwrapped,
    thousands separators removed from a plain number, ``x = 3`` → ``3``, ``\\frac12`` →
    ``\\frac{1}{2}``, ``.5`` → ``0.5``, no trailing period."""
    s = s.strip()
    s = re.sub(r"\\[!,;:]|\\ |~", " ", s)
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])", "", s)
    s = re.sub(r"\\%|%|\\\$|\$", "", s)
    # "10\text{ cm}" → "10"; "\text{(C)}" and "\text{Evelyn}" keep their content.
    unit = re.match(rf"^(.*\d.*?)\s*\\(?:text|textbf|mbox|mathrm)\s*\{{\s*{_UNIT_WORDS}\}}$", s)
    if unit:
        s = unit.group(1)
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\s*\{([^{}]*)\}", r"\1", s)
    s = s.strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    m = re.fullmatch(r"[a-zA-Z]\s*=\s*(.+)", s)
    if m and "=" not in m.group(1):
        s = m.group(1)
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)
    s = s.strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    return " ".join(s.split())


def canonical_math_string(s: str) -> str:
    """``normalize_math_answer`` without any whitespace: two answers with the same canonical
    string are the same answer."""
    return re.sub(r"\s+", "", normalize_math_answer(s))


_INT_RE = re.compile(r"[-+]?\d+")
_DEC_RE = re.compile(r"[-+]?(\d+\.\d*|\.\d+)")
_FRAC_RE = re.compile(r"([-+]?)(?:\\frac\{([-+]?\d+)\}\{(\d+)\}|(\d+)/(\d+))")


def simple_number(canon: str) -> tuple[Fraction, bool] | None:
    """(value, exact) for a canonical string that is a plain number: an integer, a decimal
    (exact=False) or a fraction ``a/b`` / ``\\frac{a}{b}``; None for anything else."""
    if _INT_RE.fullmatch(canon):
        return Fraction(int(canon)), True
    if _DEC_RE.fullmatch(canon):
        return Fraction(canon), False
    m = _FRAC_RE.fullmatch(canon)
    if m:
        sign, a1, b1, a2, b2 = m.groups()
        num, den = (int(a1), int(b1)) if a1 is not None else (int(a2), int(b2))
        if den == 0:
            return None
        value = Fraction(num, den)
        return (-value if sign == "-" else value), True
    return None


def math_equal(pred: str, gold: str, *, timeout_s: int = DEFAULT_TIMEOUT_S) -> bool:
    """Is the predicted final answer equivalent to the gold answer?

    Decided in the calling thread when both canonical strings match or both are plain exact
    numbers; otherwise by math-verify on the raw strings and, if they differ, on the normalised
    ones. A math-verify timeout counts as not equal.
    """
    if not pred or not pred.strip():
        return False
    cp, cg = canonical_math_string(pred), canonical_math_string(gold)
    if cp and cp == cg:
        return True
    np_, ng = simple_number(cp), simple_number(cg)
    if np_ is not None and ng is not None:
        if np_[0] == ng[0]:
            return True
        if np_[1] and ng[1]:
            return False
        # A decimal is involved: math-verify compares with its rounding tolerance (1/3 ≈ 0.333333).
    if _verify(pred.strip(), gold.strip(), timeout_s):
        return True
    lp, lg = normalize_math_answer(pred), normalize_math_answer(gold)
    if (lp, lg) != (pred.strip(), gold.strip()) and lp and lg:
        return bool(_verify(lp, lg, timeout_s))
    return False


def _wrap(s: str) -> str:
    return s if "$" in s or "\\boxed" in s else f"${s}$"


def verify_in_this_thread(pred: str, gold: str, timeout_s: int | None) -> bool:
    """math-verify's parse + verify. ``timeout_s`` None disables its signal alarms (the only way
    it runs off the main thread, and then nothing bounds the time)."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    try:
        g = parse(_wrap(gold), parsing_timeout=timeout_s)
        p = parse(_wrap(pred), parsing_timeout=timeout_s)
        if not g or not p:
            return False
        return bool(verify(g, p, timeout_seconds=timeout_s))
    except TimeoutException:  # a BaseException in math-verify; normally caught inside it
        return False


def _verify(pred: str, gold: str, timeout_s: int) -> bool:
    if threading.current_thread() is threading.main_thread():
        return verify_in_this_thread(pred, gold, timeout_s)
    mode = os.environ.get(THREAD_MODE_ENV, "process").strip().lower()
    if mode == "inline":
        return verify_in_this_thread(pred, gold, None)
    if mode != "process":
        raise ValueError(f"{THREAD_MODE_ENV}={mode!r}; allowed values: process, inline")
    result = _pool().equal(pred, gold, timeout_s)
    if result is None:
        logger.warning("math-verify worker gave no answer in time; scoring as not equal")
        return False
    return result


# --------------------------------------------------------------------------- worker processes


class _Worker:
    """One ``python -m dars.benchmarks._mathworker`` subprocess speaking JSON lines."""

    START_TIMEOUT_S = 120.0

    def __init__(self) -> None:
        pkg_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dars.benchmarks._mathworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=env,
        )
        if self._readline(self.START_TIMEOUT_S) != "ready":
            self.kill()
            raise RuntimeError("math-verify worker subprocess did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _readline(self, timeout: float) -> str | None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line.strip() if line else None

    def ask(self, pred: str, gold: str, timeout_s: int) -> bool | None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"pred": pred, "gold": gold, "t": timeout_s}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            return None
        # The worker's own alarms bound each parse and comparison; this deadline only catches a
        # computation stuck where no signal is delivered (e.g. inside a C extension).
        line = self._readline(6.0 * timeout_s + 5.0)
        if line is None:
            self.kill()
            return None
        return bool(json.loads(line).get("ok", False))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class _WorkerPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    def equal(self, pred: str, gold: str, timeout_s: int) -> bool | None:
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None or not worker.alive():
                worker = _Worker()
                with self._lock:
                    self._all.append(worker)
            try:
                return worker.ask(pred, gold, timeout_s)
            finally:
                with self._lock:
                    if worker.alive():
                        self._idle.append(worker)
                    else:
                        self._all.remove(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], []
        for w in workers:
            w.kill()


_POOL: _WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _WorkerPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            size = int(os.environ.get(WORKERS_ENV, "2"))
            if size < 1:
                raise ValueError(f"{WORKERS_ENV} must be >= 1, got {size}")
            _POOL = _WorkerPool(size)
            atexit.register(_POOL.close)
        return _POOL


def shutdown_workers() -> None:
    """Stop the math-verify worker subprocesses (they restart on demand)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
            _POOL = None
