"""The rules behind the deployment chain, without a server: when a collect starts the rest of the
DAG (dars/tasks/chain.py, dars/storage/freshness.py) and where a worker runs the flows
(dars/deploy.py, the pull step of deploy/prefect.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dars
from dars.deploy import MARKER, HomeNotFound, dars_home, use_home
from dars.storage.freshness import outputs_behind_store
from dars.storage.layout import RunLayout
from dars.tasks.chain import new_rows, unchanged_message
from tests.simstore import sim_experiment

REPO = Path(__file__).resolve().parents[2]


def _touch(path: Path, t: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (t, t))
    return path


def _run_root(tmp_path: Path, *, store: float, supervision: float | None, report: float | None):
    """A root with one observation and one rewrite file written at ``store`` (epoch seconds),
    two supervision files at ``supervision`` and the report at ``report`` (None: missing)."""
    lay = RunLayout(tmp_path / "run")
    _touch(lay.observation_file("demo_mc", "train", "m1", 0), store)
    _touch(lay.rewrite_file("demo_mc", "train", 0), store - 5)
    if supervision is not None:
        _touch(lay.supervision_file("demo_mc", "aggregates"), supervision)
        _touch(lay.supervision_file("demo_mc", "labels"), supervision + 1)
    if report is not None:
        _touch(lay.report_file("index", "md"), report)
        _touch(lay.report_file("index", "html"), report)
    return lay.root


T = 1_700_000_000.0


@pytest.mark.parametrize(
    ("store", "supervision", "report", "behind"),
    [
        (T, T + 10, T + 20, None),  # every output newer than what it is computed from
        (T, None, None, "no supervision yet"),
        (T + 15, T + 10, T + 20, "supervision under"),  # new rows after the supervision
        (T, T, T + 20, "supervision under"),  # same timestamp: treated as behind
        (T, T + 10, None, "no report yet"),  # a stage after supervise failed
        (T, T + 10, T + 5, "report under"),  # supervised again, train/evaluate/report not
    ],
)
def test_outputs_behind_store(tmp_path, store, supervision, report, behind):
    root = _run_root(tmp_path, store=store, supervision=supervision, report=report)
    got = outputs_behind_store(root)
    if behind is None:
        assert got is None
    else:
        assert got is not None and behind in got, got


def test_one_report_file_missing_counts_as_no_report(tmp_path):
    root = _run_root(tmp_path, store=T, supervision=T + 10, report=T + 20)
    RunLayout(root).report_file("index", "html").unlink()
    assert "no report yet" in outputs_behind_store(root)


def test_collect_changes_something_when_it_stored_rows_or_outputs_are_behind(tmp_path):
    nothing = {"ok": 0, "recovered": 0, "failed": 0, "already_done": 12}
    assert new_rows(nothing, nothing) == 0
    assert new_rows({"ok": 3}, {"recovered": 2}) == 5

    current = sim_experiment(_run_root(tmp_path, store=T, supervision=T + 10, report=T + 20))
    message = unchanged_message(current, nothing, nothing)
    assert message is not None and "no new rows" in message and str(current.root) in message
    # New rows (run ok, or recovered from a killed run's journal) always start the chain.
    assert unchanged_message(current, {"ok": 1}, nothing) is None
    assert unchanged_message(current, nothing, {"recovered": 1}) is None
    # Nothing new, but a stage after collect never finished on this store: run it again.
    (tmp_path / "b").mkdir()
    behind = sim_experiment(_run_root(tmp_path / "b", store=T, supervision=T + 10, report=None))
    assert unchanged_message(behind, nothing, nothing) is None


def test_use_home_takes_dars_home_when_set(tmp_path, monkeypatch):
    home = tmp_path / "checkout"
    _touch(home / MARKER, T)
    monkeypatch.setenv("DARS_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert use_home() == {"directory": str(home.resolve())}
    assert Path.cwd() == home.resolve()


def test_use_home_defaults_to_the_checkout_dars_is_installed_from(monkeypatch, tmp_path):
    monkeypatch.delenv("DARS_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert use_home() == {"directory": str(REPO)}
    assert Path.cwd() == REPO


def test_a_dars_home_that_is_no_checkout_is_one_line(tmp_path):
    with pytest.raises(HomeNotFound) as err:
        dars_home({"DARS_HOME": str(tmp_path)})
    message = str(err.value)
    assert "\n" not in message and f"DARS_HOME={tmp_path}" in message and str(MARKER) in message


def test_no_dars_home_and_no_checkout_is_one_line_naming_dars_home(tmp_path, monkeypatch):
    # dars installed as a regular package: site-packages/dars/__init__.py, no checkout around.
    fake = tmp_path / "site-packages" / "dars" / "__init__.py"
    _touch(fake, T)
    monkeypatch.setattr(dars, "__file__", str(fake))
    with pytest.raises(HomeNotFound) as err:
        dars_home({})
    message = str(err.value)
    assert "\n" not in message and message.startswith("DARS_HOME is not set")
    assert "set DARS_HOME to the repository root" in message
