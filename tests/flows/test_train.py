"""train_flow end to end on a tiny simulated store, under a temporary Prefect server."""

from __future__ import annotations

import polars as pl
import pytest

from dars.storage import RunLayout
from dars.tasks.supervise import supervise_dataset
from tests.simstore import sim_experiment, write_sim_store

pytestmark = pytest.mark.flow


def _tiny(tmp_path, root):
    config = tmp_path / "tiny.yaml"
    exp = sim_experiment(
        tmp_path / "not-used",
        n_train=16,
        n_items=24,
        train_rewrites=2,
        train_decodes=2,
        draws=5,
        config_path=config,
    )
    text = config.read_text().replace("encoder: all-MiniLM-L6-v2", "encoder: tfidf")
    assert "encoder: tfidf" in text
    config.write_text(text)
    write_sim_store(exp, root)
    supervise_dataset(exp.model_copy(update={"root": str(root)}), "demo_mc", n_boot=20)
    return config


def test_train_flow_trains_every_family_supervision_pair(prefect_harness, tmp_path):
    from dars.flows.train import train_flow
    from dars.tasks.train import REPORT_SCHEMA

    root = tmp_path / "run"
    config = _tiny(tmp_path, root)

    report = train_flow(
        config=str(config), root=str(root), families=["knn"], supervisions=["dars", "single_shot"]
    )

    assert report.schema == pl.Schema(REPORT_SCHEMA)
    assert sorted(report["supervision"].to_list()) == ["dars", "single_shot"]
    assert report["n_draws"].sort().to_list() == [1, 5]
    assert report["n_train"].to_list() == [16, 16]
    layout = RunLayout(root)
    for supervision, rows in (("dars", 8), ("single_shot", 5 * 8)):
        assert (layout.model_dir("demo_mc", "knn", supervision) / "router.json").is_file()
        assert pl.read_parquet(layout.routes_file("demo_mc", "knn", supervision)).height == rows
    assert not (tmp_path / "not-used").exists()


def test_train_flow_rejects_unknown_names_before_training(prefect_harness, tmp_path):
    from dars.flows.train import train_flow

    config = tmp_path / "tiny.yaml"
    sim_experiment(tmp_path / "r", n_train=16, n_items=24, config_path=config)
    with pytest.raises(ValueError, match="valid: .*rm_softmax"):
        train_flow(config=str(config), families=["knn", "svm"])
    with pytest.raises(ValueError, match="valid: single_shot, dars, input_only"):
        train_flow(config=str(config), supervisions=["dars", "dar"])
