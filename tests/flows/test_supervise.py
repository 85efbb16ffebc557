"""supervise_flow end to end on a tiny simulated experiment, under a temporary Prefect server."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prefect.states import Failed

from dars.storage import RunLayout
from dars.storage.supervision_store import read_supervision
from dars.supervision.tables import SUMMARY_COLUMNS, TABLES
from dars.tasks.retry import retry_on_transient_io
from dars.tasks.supervise import supervise_dataset_task
from tests.simstore import sim_experiment, write_sim_store

pytestmark = pytest.mark.flow


def test_supervise_flow_reads_the_store_and_writes_every_table(prefect_harness, tmp_path):
    from dars.flows.supervise import supervise_flow

    root = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    # The config's own root points elsewhere: the flow's root parameter must win.
    exp = sim_experiment(tmp_path / "not-used", n_train=20, n_items=40, config_path=config)
    write_sim_store(exp, root)

    summary = supervise_flow(config=str(config), root=str(root))

    assert summary.columns == list(SUMMARY_COLUMNS)
    values = dict(zip(summary["metric"], summary["value"], strict=True))
    assert values["n_queries"] == 20 and values["n_models"] == 6
    assert values["n_observations"] == 20 * 6 * 25
    layout = RunLayout(root)
    for name in TABLES:
        assert layout.supervision_file("demo_mc", name).is_file(), name
    assert not (tmp_path / "not-used").exists()
    assert_frame_equal(read_supervision(root, "demo_mc", "summary"), summary)
    assert read_supervision(root, "demo_mc", "dars").height == 20 * 6


def test_supervise_flow_fails_clearly_without_observations(prefect_harness, tmp_path):
    from dars.flows.supervise import supervise_flow

    config = tmp_path / "tiny.yaml"
    sim_experiment(tmp_path / "empty", n_train=20, n_items=40, config_path=config)
    with pytest.raises(FileNotFoundError, match="no ok train observations"):
        supervise_flow(config=str(config))


def test_task_retries_only_transient_io_errors():
    assert retry_on_transient_io(None, None, Failed(data=OSError(5, "I/O error")))
    assert not retry_on_transient_io(None, None, Failed(data=FileNotFoundError("no store")))
    assert not retry_on_transient_io(None, None, Failed(data=ValueError("bad data")))


def test_task_body_writes_the_dataset_tables(tmp_path):
    exp = sim_experiment(tmp_path, n_train=10, n_items=20, train_rewrites=2, train_decodes=2)
    write_sim_store(exp, tmp_path)
    result = supervise_dataset_task.fn(exp, "demo_mc", n_boot=50)
    assert list(result.files) == list(TABLES)
    assert result.summary.filter(pl.col("metric") == "n_queries")["value"].item() == 10
