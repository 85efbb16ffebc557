"""The train stage (dars.tasks.train) on a tiny simulated store: files, routes, reload, caching.

The pure helpers it calls (targets, routes tables, the λ sweep) are tested in
tests/routers/test_training.py."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dars.benchmarks.loading import load_benchmark_splits
from dars.routers import load_router
from dars.routers.encoders import TfidfEncoder, item_text
from dars.storage import RunLayout
from dars.storage.embeddings import EmbeddingCache
from dars.tasks.supervise import supervise_dataset
from dars.tasks.train import embed_queries, train_router
from tests.simstore import sim_experiment, write_sim_store

DATASET = "demo_mc"
N_TRAIN, N_TEST, DRAWS = 16, 8, 5


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    exp = sim_experiment(
        root,
        n_train=N_TRAIN,
        n_items=N_TRAIN + N_TEST,
        train_rewrites=2,
        train_decodes=2,
        draws=DRAWS,
    )
    exp = exp.model_copy(update={"encoder": "tfidf"})
    write_sim_store(exp, root)
    supervise_dataset(exp, DATASET, n_boot=20)
    return exp, root


@pytest.mark.parametrize("family", ["knn", "mirt"])
@pytest.mark.parametrize("supervision", ["single_shot", "dars", "without_risk"])
def test_train_router_writes_router_and_routes(store, family, supervision):
    exp, root = store
    report = train_router(exp, DATASET, family, supervision)

    layout = RunLayout(root)
    out = layout.model_dir(DATASET, family, supervision)
    assert report["dir"] == str(out)
    n_draws = DRAWS if supervision == "single_shot" else 1
    assert report["n_draws"] == n_draws and report["n_train"] == N_TRAIN
    assert report["n_test"] == N_TEST
    assert (out / "router.json").is_file()
    test_ids = [it.query_id for it in load_benchmark_splits(exp.benchmark(DATASET), 0)["test"]]
    assert len(test_ids) == N_TEST

    routes = pl.read_parquet(layout.routes_file(DATASET, family, supervision))
    assert routes.schema == pl.Schema(
        {"draw": pl.Int32, "query_id": pl.String, "model": pl.String, "model_index": pl.Int32}
    )
    assert routes.height == n_draws * N_TEST
    assert routes["draw"].to_list() == np.repeat(np.arange(n_draws), N_TEST).tolist()
    assert routes["query_id"].to_list() == test_ids * n_draws
    pool = exp.pool.names
    assert routes["model"].to_list() == [pool[i] for i in routes["model_index"]]

    # The saved router (draw 0 for single_shot) reproduces its routes.
    router = load_router(out)
    assert list(router.models_) == pool
    assert router.has_sigma_ == (supervision == "dars")
    _, _, ids, X_test, _ = embed_queries(exp, DATASET)
    assert ids == test_ids
    draw0 = routes.filter(pl.col("draw") == 0)["model_index"].to_numpy()
    np.testing.assert_array_equal(router.route(X_test, exp.lam, exp.beta), draw0)


def test_single_shot_draws_differ_and_dars_differs_from_single_shot(store):
    exp, root = store
    layout = RunLayout(root)
    for supervision in ("single_shot", "dars"):
        train_router(exp, DATASET, "knn", supervision)
    ss = pl.read_parquet(layout.routes_file(DATASET, "knn", "single_shot"))
    # Draws are trained on different labels: with 5 draws some test route must change.
    per_query = ss.group_by("query_id").agg(pl.col("model_index").n_unique())
    assert per_query["model_index"].max() > 1


def test_rerun_encodes_nothing_and_cache_lives_at_the_layout_path(store, monkeypatch):
    exp, root = store
    first = embed_queries(exp, DATASET)
    assert first[4].startswith("tfidf:")
    layout = RunLayout(root)
    items = load_benchmark_splits(exp.benchmark(DATASET), exp.seed)
    for split, X in (("train", first[1]), ("test", first[3])):
        assert X.shape[0] == len(items[split])
        cache = EmbeddingCache(layout.embeddings_file("tfidf", DATASET, split))
        # One cached row per distinct text (the simulated benchmark repeats a few questions).
        assert len(cache) == len({item_text(it) for it in items[split]})

    def refuse(self, texts):
        raise AssertionError(f"encoded {len(texts)} texts on a rerun")

    monkeypatch.setattr(TfidfEncoder, "encode", refuse)
    again = embed_queries(exp, DATASET)
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[3], again[3])
    assert again[4] == first[4]
    # A fresh cache (as in a new process) finds every text too.
    enc = TfidfEncoder().fit([item_text(it) for it in items["train"]])
    cache = EmbeddingCache(layout.embeddings_file("tfidf", DATASET, "test"))
    cache.embed(enc, [item_text(it) for it in items["test"]])
    assert cache.last_encoded == 0


def test_bad_family_or_supervision_lists_the_valid_ones(store):
    exp, root = store
    with pytest.raises(ValueError, match="valid: .*knn"):
        train_router(exp, DATASET, "nope", "dars")
    with pytest.raises(ValueError, match="valid: single_shot, dars"):
        train_router(exp, DATASET, "knn", "bogus")


# ------------------------------------------------------------------------------------------------
# λ-sweep routes (lam_routes.parquet, the Pareto experiment's input)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["knn", "mirt", "rm_softmax"])
@pytest.mark.parametrize("supervision", ["single_shot", "dars"])
def test_train_router_writes_lam_routes_for_every_lam(store, family, supervision):
    exp, root = store
    grid = exp.evaluation.lam_grid
    assert exp.lam in grid
    report = train_router(exp, DATASET, family, supervision)
    assert report["lam_route_s"] >= 0
    layout = RunLayout(root)
    lam_routes = pl.read_parquet(layout.lam_routes_file(DATASET, family, supervision))
    assert lam_routes.schema == pl.Schema(
        {
            "lam": pl.Float64,
            "draw": pl.Int32,
            "query_id": pl.String,
            "model": pl.String,
            "model_index": pl.Int32,
        }
    )
    n_draws = DRAWS if supervision == "single_shot" else 1
    assert lam_routes.height == len(grid) * n_draws * N_TEST
    assert lam_routes["lam"].to_list() == np.repeat(grid, n_draws * N_TEST).tolist()

    # At the experiment's λ the sweep repeats routes.parquet exactly.
    routes = pl.read_parquet(layout.routes_file(DATASET, family, supervision))
    assert lam_routes.filter(pl.col("lam") == exp.lam).drop("lam").equals(routes)

    # The saved router (draw 0) routes every λ as the sweep says (slow path: route per λ).
    router = load_router(layout.model_dir(DATASET, family, supervision))
    _, _, _, X_test, _ = embed_queries(exp, DATASET)
    for lam in grid:
        got = lam_routes.filter((pl.col("lam") == lam) & (pl.col("draw") == 0))
        np.testing.assert_array_equal(
            got["model_index"].to_numpy(), router.route(X_test, lam, exp.beta)
        )
    if family != "rm_softmax":
        # Cost matters: over the grid from λ=0 to λ=2 some test route changes.
        d0 = lam_routes.filter(pl.col("draw") == 0)
        changes = d0.group_by("query_id").agg(pl.col("model_index").n_unique())
        assert changes["model_index"].max() > 1


def test_ablation_supervisions_write_no_lam_routes_and_clear_stale_ones(store):
    exp, root = store
    path = RunLayout(root).lam_routes_file(DATASET, "knn", "without_risk")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stale")
    train_router(exp, DATASET, "knn", "without_risk")
    assert not path.exists()


def test_failed_rerun_leaves_no_routes_file(store, monkeypatch):
    import dars.storage.models as models_store

    exp, root = store
    layout = RunLayout(root)
    train_router(exp, DATASET, "knn", "dars")
    routes_path = layout.routes_file(DATASET, "knn", "dars")
    assert routes_path.is_file() and layout.lam_routes_file(DATASET, "knn", "dars").is_file()
    real = models_store.atomic_write_table

    def fail_on_routes(table, path):
        if path == routes_path:
            raise OSError("disk full")
        return real(table, path)

    monkeypatch.setattr(models_store, "atomic_write_table", fail_on_routes)
    with pytest.raises(OSError, match="disk full"):
        train_router(exp, DATASET, "knn", "dars")
    # routes.parquet is removed first and written last: the dir no longer claims completeness.
    assert not routes_path.exists()
    monkeypatch.undo()
    train_router(exp, DATASET, "knn", "dars")
    assert routes_path.is_file()
