"""The CLI's stage progress: events from :class:`StageProgress`, shown as plain lines without a
terminal and as bars (no plain line) on one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dars import cli
from dars.flows.artifacts import StageProgress
from dars.progress import StageEvent, emit, subscribe
from tests.simstore import sim_experiment


def test_stage_counts_and_elapsed_text():
    assert cli.stage_counts(StageEvent("train", 3, 147, "routers")) == "3/147 routers"
    assert cli.stage_counts(StageEvent("evaluate", 7, 7, "experiments", 1)) == (
        "7/7 experiments, 1 failed"
    )
    assert cli.stage_counts(StageEvent("report", 0, 1, "report")) == "running"
    assert cli.stage_counts(StageEvent("report", 1, 1, "report")) == "done"
    assert cli.stage_counts(StageEvent("rewrite", 0, 0, "shards")) == "nothing to do"
    assert [cli.elapsed_text(s) for s in (4.4, 59.6, 113, 7500)] == [
        "4 s",
        "1 min 0 s",
        "1 min 53 s",
        "2 h 5 min",
    ]


def test_stage_progress_emits_an_event_per_change_outside_a_flow_run(tmp_path):
    events: list[StageEvent] = []
    unsubscribe = subscribe(events.append)
    try:
        progress = StageProgress(sim_experiment(tmp_path / "r"), "train", 3, unit="routers")
        progress.advance()
        progress.advance(2, failed=1)
    finally:
        unsubscribe()
    progress.advance(0)  # no listener any more
    assert [(e.done, e.total, e.failed, e.finished) for e in events] == [
        (0, 3, 0, False),
        (1, 3, 0, False),
        (3, 3, 1, True),
    ]
    assert {(e.stage, e.unit) for e in events} == {("train", "routers")}


def _display(monkeypatch, terminal: bool) -> io.StringIO:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=100)
    monkeypatch.setattr(cli, "console", console)
    return out


def test_without_a_terminal_each_stage_prints_plain_lines(monkeypatch):
    out = _display(monkeypatch, terminal=False)
    clock = iter([0.0, 1.0, 2.0, 20.0, 113.2, 200.0, 216.0])
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    with cli._StageDisplay():
        emit(StageEvent("train", 0, 147, "routers"))  # t=0: the stage's clock starts
        emit(StageEvent("train", 1, 147, "routers"))  # t=1: first count, printed
        emit(StageEvent("train", 2, 147, "routers"))  # t=2: too soon after the last line
        emit(StageEvent("train", 90, 147, "routers"))  # t=20: printed again
        emit(StageEvent("train", 147, 147, "routers"))  # t=113.2: finished
        emit(StageEvent("report", 0, 1, "report"))  # t=200
        emit(StageEvent("report", 1, 1, "report"))  # t=216
    emit(StageEvent("train", 0, 1, "routers"))  # after the display: not shown
    assert out.getvalue().splitlines() == [
        "train: 1/147 routers (1 s)",
        "train: 90/147 routers (20 s)",
        "train: 147/147 routers (1 min 53 s)",
        "report: done (16 s)",
    ]
    assert "\x1b" not in out.getvalue()


def test_on_a_terminal_stages_are_bars_that_stay(monkeypatch):
    out = _display(monkeypatch, terminal=True)
    with cli._StageDisplay() as display:
        emit(StageEvent("supervise", 0, 3, "datasets"))
        emit(StageEvent("supervise", 3, 3, "datasets"))
        emit(StageEvent("evaluate", 0, 7, "experiments"))
        emit(StageEvent("evaluate", 2, 7, "experiments"))
        tasks = {t.description: t for t in display.progress.tasks}
        assert tasks["supervise"].finished and tasks["supervise"].fields["counts"] == (
            "3/3 datasets"
        )
        assert not tasks["evaluate"].finished and tasks["evaluate"].completed == 2
    text = out.getvalue()
    assert "3/3 datasets" in text and "2/7 experiments" in text
    assert "supervise: 3/3" not in text  # no plain line on a terminal


@pytest.mark.parametrize("terminal", [False, True])
def test_a_failing_display_never_fails_the_stage(monkeypatch, terminal):
    _display(monkeypatch, terminal)

    def boom(*a, **k):
        raise OSError("closed stream")

    with cli._StageDisplay() as display, monkeypatch.context() as m:
        m.setattr(display, "_show_live", boom)
        m.setattr(cli.console, "print", boom)
        emit(StageEvent("train", 1, 1, "routers"))  # swallowed by dars.progress.emit


def test_collection_has_a_rewrite_bar_and_a_decode_bar(monkeypatch, tmp_path):
    """Each bar has its own total (rewriter calls, decode calls) and counter, and its clock
    starts with its stage."""
    import time
    from types import SimpleNamespace

    import polars as pl

    from dars.tasks import collect

    monkeypatch.setattr(
        collect,
        "estimate_budget",
        lambda exp, only=None: pl.DataFrame({"model": ["rw", "a", "b"], "calls": [4, 10, 20]}),
    )
    exp = SimpleNamespace(rewriter=SimpleNamespace(name="rw"), root=str(tmp_path))
    out = _display(monkeypatch, terminal=True)
    collect.reset_progress()
    try:
        with cli._StageDisplay(exp, "thread", collect=True) as display:
            bars = {t.description: t for t in display.progress.tasks}
            assert (bars["rewrite calls"].total, bars["decode calls"].total) == (4, 30)
            assert not bars["rewrite calls"].started and not bars["decode calls"].started
            emit(StageEvent("rewrite", 0, 2, "shards"))
            collect.progress("rewrite").add(ok=4, cost=0.25)
            collect.progress("decode").add(ok=3, failed=1, key=("k",))
            deadline = time.monotonic() + 30
            while bars["decode calls"].completed < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert bars["rewrite calls"].started and not bars["decode calls"].started
            assert bars["rewrite calls"].fields["counts"] == "4/4  failed 0  cost $0.2500"
            assert bars["decode calls"].fields["counts"] == "3/30  failed 1  cost $0.0000"
            assert not any(t.description in ("rewrite", "decode") for t in display.progress.tasks)
    finally:
        collect.reset_progress()
    assert "4/4" in out.getvalue()
