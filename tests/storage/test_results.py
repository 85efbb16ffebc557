"""The result store: paths, the JSON twin with the run context, removal, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dars.config import load_experiment
from dars.storage import StorageError
from dars.storage.results import (
    ResultMissingError,
    read_context,
    read_result,
    remove_result,
    result_exists,
    run_context,
    write_result,
)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
FRAME = pl.DataFrame({"dataset": ["d", "d"], "U": [0.5, None], "n": [1, 2]})


def test_round_trip_at_the_layout_path_with_json_twin(tmp_path):
    ctx = {"experiment": "t", "lam": 0.05}
    path = write_result(tmp_path, "main", FRAME, ctx, family="mirt", n_boot=20)
    assert path == tmp_path / "results" / "main.parquet"
    assert result_exists(tmp_path, "main")
    assert_frame_equal(read_result(tmp_path, "main"), FRAME)
    payload = json.loads((tmp_path / "results" / "main.json").read_text())
    assert list(payload) == ["result", "context", "family", "n_boot", "rows"]
    assert payload["result"] == "main" and payload["family"] == "mirt"
    assert payload["rows"] == [
        {"dataset": "d", "U": 0.5, "n": 1},
        {"dataset": "d", "U": None, "n": 2},
    ]
    assert read_context(tmp_path, "main") == ctx


def test_remove_deletes_both_files(tmp_path):
    write_result(tmp_path, "recovery", FRAME, {})
    remove_result(tmp_path, "recovery")
    assert not result_exists(tmp_path, "recovery")
    assert list((tmp_path / "results").iterdir()) == []
    remove_result(tmp_path, "recovery")  # absent: nothing to do


def test_missing_result_names_the_file_and_the_command(tmp_path):
    with pytest.raises(
        ResultMissingError,
        match=r"'beta' not found at .*beta\.parquet.*"
        r"`dars experiment beta` \(or `dars evaluate` for all\)",
    ):
        read_result(tmp_path, "beta", producer="beta")
    with pytest.raises(FileNotFoundError, match=r"run `dars evaluate`$"):
        read_result(tmp_path, "beta")
    with pytest.raises(ResultMissingError, match=r"no JSON twin at .*beta\.json"):
        read_context(tmp_path, "beta")


def test_names_must_be_path_safe(tmp_path):
    with pytest.raises(StorageError, match="name='../x'"):
        write_result(tmp_path, "../x", FRAME, {})


def test_run_context_states_the_run_and_the_whole_config():
    exp = load_experiment(CONFIG, root="runs/x")
    ctx = run_context(exp)
    assert ctx["experiment"] == "demo" and ctx["simulated"] is True
    assert ctx["lam"] == exp.lam and ctx["beta"] == exp.beta and ctx["seed"] == exp.seed
    assert ctx["pool"]["cheap-weak"] == "dars-sim/cheap-weak"
    assert [b["name"] for b in ctx["benchmarks"]] == [b.name for b in exp.benchmarks]
    assert ctx["config"] == exp.model_dump(mode="json")
    assert ctx["written_at"].endswith("+00:00")
    json.dumps(ctx)  # JSON-serialisable as it is
