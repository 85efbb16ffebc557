"""The model store: exact paths, routes schemas, write order and readers."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq
import pytest

from dars.routers import Targets, make_router
from dars.routers.training import lam_routes_table, routes_table
from dars.storage import RunLayout
from dars.storage.models import (
    LAM_ROUTES_SCHEMA,
    ROUTES_SCHEMA,
    complete_routers,
    read_lam_routes,
    read_routes,
    routes_exist,
    write_trained,
)


@pytest.fixture
def router():
    X = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]
    targets = Targets(q=[[1, 0], [0, 1], [1, 1]], c=[[0, 1], [0, 1], [0, 1]], models=("a", "b"))
    return make_router("knn", random_state=0, n_neighbors=2).fit(X, targets)


def test_write_trained_stores_router_routes_and_lam_routes_at_their_paths(tmp_path, router):
    routes = routes_table([[1, 0]], ["q1", "q2"], ["a", "b"])
    lam = lam_routes_table([[[1, 0]], [[0, 0]]], [0.0, 0.5], ["q1", "q2"], ["a", "b"])
    out = write_trained(tmp_path, "ds", "knn", "dars", router, routes, lam)

    assert out == tmp_path / "models" / "dataset=ds" / "family=knn" / "supervision=dars"
    assert (out / "router.json").is_file()
    layout = RunLayout(tmp_path)
    assert pq.read_schema(layout.routes_file("ds", "knn", "dars")).equals(ROUTES_SCHEMA)
    assert pq.read_schema(layout.lam_routes_file("ds", "knn", "dars")).equals(LAM_ROUTES_SCHEMA)
    assert read_routes(tmp_path, "ds", "knn", "dars").equals(routes)
    assert read_lam_routes(tmp_path, "ds", "knn", "dars").equals(lam)
    assert routes_exist(tmp_path, "ds", "knn", "dars")
    assert complete_routers(tmp_path, "ds") == [("knn", "dars")]
    assert LAM_ROUTES_SCHEMA.names == ["lam", *ROUTES_SCHEMA.names]


def test_a_rerun_without_lam_routes_removes_the_old_ones(tmp_path, router):
    routes = routes_table([[1, 0]], ["q1", "q2"], ["a", "b"])
    lam = lam_routes_table([[[1, 0]]], [0.0], ["q1", "q2"], ["a", "b"])
    write_trained(tmp_path, "ds", "knn", "dars", router, routes, lam)
    write_trained(tmp_path, "ds", "knn", "dars", router, routes)
    assert read_lam_routes(tmp_path, "ds", "knn", "dars") is None


def test_interrupted_training_is_not_complete_and_readers_name_the_command(tmp_path, router):
    RunLayout(tmp_path).model_dir("ds", "mirt", "dars").mkdir(parents=True)
    assert complete_routers(tmp_path, "ds") == []
    with pytest.raises(FileNotFoundError, match=r"dars train --family mirt --supervision dars"):
        read_routes(tmp_path, "ds", "mirt", "dars")


def test_routes_with_missing_columns_are_rejected_before_anything_is_written(tmp_path, router):
    bad = pl.DataFrame({"draw": [0], "query_id": ["q1"]})
    with pytest.raises(ValueError, match=r"routes lacks column\(s\) \['model', 'model_index'\]"):
        write_trained(tmp_path, "ds", "knn", "dars", router, bad)
    assert not RunLayout(tmp_path).model_dir("ds", "knn", "dars").exists()
