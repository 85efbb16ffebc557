"""The figures the reliability suite measures, one row per check, printed by ``summary``.

Each topic module of ``tests/reliability`` (``money.py``, ``integrity.py``, …) has a
``measure(workdir: Path, quick: bool) -> list[Figure]`` that runs its scenario on loopback only
(the fake OpenAI server, the simulated pool, files it makes) and returns what it measured; its
``test_<topic>.py`` asserts every figure is ``ok``, and ``python -m tests.reliability.summary``
runs them all and prints the table the README's reliability section shows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured check: ``value`` against ``target`` (both as printed), and whether it held.

    ``topic``: the scenario (e.g. "sigkill resume"); ``check``: what was counted (e.g.
    "re-made calls"); ``value``: the measurement ("0 of 1,200"); ``target``: the promise ("0");
    ``ok``: value meets target; ``detail``: one line of context (seeds, counts, bound used).
    """

    topic: str
    check: str
    value: str
    target: str
    ok: bool
    detail: str = ""


def failed(figures: list[Figure]) -> list[Figure]:
    """The figures that did not meet their target."""
    return [f for f in figures if not f.ok]


def assert_all_ok(figures: list[Figure]) -> None:
    """Fail a test with every figure that missed its target, one per line."""
    bad = failed(figures)
    assert not bad, "\n".join(
        f"{f.topic}: {f.check} = {f.value} (target {f.target}) {f.detail}" for f in bad
    )
