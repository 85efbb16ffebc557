"""A collect that changed nothing ends in the Completed-type state ``Unchanged`` (so the
deployment triggers, which expect ``prefect.flow-run.Completed``, start nothing downstream),
while the CLI and the pipeline, which call the flow directly, still get its summary. Issue 13:
"a collect that had nothing to do still re-runs training, evaluation and the report"."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dars.cli import app
from dars.storage.layout import RunLayout

pytestmark = pytest.mark.flow

REPO = Path(__file__).resolve().parents[2]


def _tiny_config(path: Path, root: Path) -> Path:
    spec = importlib.util.spec_from_file_location("prefect_stack", REPO / "bench/prefect_stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_config(path, root)


def test_a_collect_with_nothing_new_ends_unchanged_and_callers_keep_its_summary(
    prefect_harness, tmp_path, quiet_prefect_console
):
    from dars.flows.collect import UNCHANGED, collect_flow
    from dars.flows.pipeline import pipeline_flow

    root = tmp_path / "run"
    config = str(_tiny_config(tmp_path / "tiny.yaml", root))
    out = pipeline_flow(config, workers=2, run_label="t")
    assert out["collect"]["decode"]["ok"] > 0 and set(out) >= {"supervise", "report"}

    state = collect_flow(config, return_state=True)
    assert state.is_completed() and state.name == UNCHANGED
    assert "no new rows" in state.message
    summary = state.result()
    assert summary["decode"]["ok"] == 0 and summary["decode"]["tasks"] == 0  # all complete

    # The CLI's route: a direct call returns the summary; `dars collect --run-flow` reports 0
    # new calls, and `dars collect` proves from the store that nothing is left and says so in
    # one line, without starting the flow (issue 14: a no-op collect in seconds).
    assert collect_flow(config)["rewrite"]["ok"] == 0
    result = CliRunner().invoke(app, ["collect", "-c", config, "--run-flow"])
    assert result.exit_code == 0, result.output
    assert "collected 0 calls" in result.output
    result = CliRunner().invoke(app, ["collect", "-c", config])
    assert result.exit_code == 0, result.output
    assert "the collect flow was not started" in result.output
    assert "collected" not in result.output and "0 missing" in result.output

    # A stage after collect did not finish on this store (no report): the chain must run again.
    RunLayout(root).report_file("index", "html").unlink()
    state = collect_flow(config, return_state=True)
    assert state.is_completed() and state.name == "Completed"
