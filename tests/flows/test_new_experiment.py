"""A new experiment is one module: the toy experiment of tests/evaluation/toy.py, registered at
test time, gets its `dars experiment` command, runs through the evaluate flow and task, and has
its section in the report — with no change to any other file."""

from __future__ import annotations

import polars as pl
import yaml
from typer.testing import CliRunner

from dars.cli import app
from dars.storage import write_observations
from tests.evaluation.hand_example import SCORES, experiment, observation_frame
from tests.evaluation.toy import registered, toy_spec
from tests.simstore import observation_rows

runner = CliRunner()


def test_toy_experiment_has_a_command_runs_and_is_reported(
    tmp_path, prefect_harness, quiet_prefect_console
):
    root = tmp_path / "run"
    frame = observation_frame()
    rows = pl.concat(
        observation_rows(frame.filter(view=v).drop("view"), split="test", view=v) for v in SCORES
    )
    write_observations(root, rows, shard=0)
    cfg = tmp_path / "hand.yaml"
    cfg.write_text(yaml.safe_dump(experiment(root).model_dump(mode="json"), sort_keys=False))

    with registered(toy_spec()):
        listing = runner.invoke(app, ["experiment", "--help"])
        assert listing.exit_code == 0 and "toy" in listing.output
        assert "Ok observations per model" in listing.output

        result = runner.invoke(app, ["experiment", "toy", "-c", str(cfg)])
        assert result.exit_code == 0, result.output + repr(result.exception)
        assert "toy: ok observations" in result.output and "0.375" in result.output
        assert "toy_counts.parquet" in result.output
        assert (root / "results" / "toy_counts.parquet").is_file()

        # The report needs the main table; this store has no router, only reference rows.
        assert runner.invoke(app, ["experiment", "main", "-c", str(cfg)]).exit_code == 0
        result = runner.invoke(app, ["report", "-c", str(cfg)])
        assert result.exit_code == 0, result.output + repr(result.exception)
    md = (root / "report" / "index.md").read_text()
    assert "\n## 9. Toy counts\n" in md and "| a | 8 | 0.375 |" in md
    assert (root / "report" / "toy_counts.png").is_file()
    # Unregistered again: the command is gone.
    assert runner.invoke(app, ["experiment", "toy", "-c", str(cfg)]).exit_code == 2
