"""The sample-efficiency experiment (Fig 4a): hand-checked on tests/evaluation/sweep_example.py,
then with the β experiment on a small simulated store (train grid 3 rewrites × 2 decodes, two
test views) through the evaluate task: the batched-vs-separate fits and the error messages."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone

from dars.benchmarks.loading import load_splits
from dars.config import Evaluation
from dars.evaluation.experiments.base import EMBEDDINGS, VIEW_UTILITIES
from dars.evaluation.experiments.beta import BETA_COLUMNS
from dars.evaluation.experiments.sample_efficiency import (
    SAMPLE_EFFICIENCY_COLUMNS,
    SPEC,
    fit_protocols,
    protocol_targets,
    sample_efficiency,
)
from dars.evaluation.refit import sweep_data
from dars.routers import route_many
from dars.storage import RunLayout, write_observations
from dars.storage.results import read_context, read_result, result_exists
from dars.storage.supervision_store import read_supervision
from dars.tasks.evaluate import load_test_views, read_inputs, run_experiment
from dars.tasks.supervise import supervise_dataset
from tests.evaluation.sweep_example import (
    ALL_A,
    ALL_B,
    LAM,
    MODELS,
    cheap,
    constant_targets,
    hand_data,
    u_of,
)
from tests.simstore import observation_rows, sim_experiment, write_sim_store


# ------------------------------------------------------------------------------------------------
# sample efficiency, hand-checked
# ------------------------------------------------------------------------------------------------
def _subgrid(train_ids, protocols: dict[tuple[int, int], dict]) -> pl.DataFrame:
    return pl.concat(
        constant_targets(train_ids, per_model).with_columns(
            k=pl.lit(k, pl.Int32), m=pl.lit(m, pl.Int32)
        )
        for (k, m), per_model in protocols.items()
    )


# (1, 1) says A is better; (2, 2) says B is (at β = 0.2: u_A = 0.6 - 0.2·0.5 = 0.5 < 0.7).
PROTOCOLS = {
    (2, 2): {"A": (0.6, 0.0, 0.5), "B": (0.7, 0.0, 0.0)},
    (1, 1): {"A": (0.9, 0.0, 0.0), "B": (0.5, 0.0, 0.0)},
}


@pytest.mark.parametrize("family", ["knn", "avengers_pro"])
def test_sample_efficiency_routes_each_protocol_on_its_own_targets(family):
    data = hand_data()
    sub = _subgrid(data.train_ids, PROTOCOLS)
    out = sample_efficiency(
        sub, data, {family: cheap(family)}, lam=LAM, beta=0.2, n_boot=50, seed=0
    )
    assert out.schema == pl.Schema(SAMPLE_EFFICIENCY_COLUMNS)
    assert out.select("k", "m", "n_obs").rows() == [(1, 1, 1)] * 2 + [(2, 2, 4)] * 2
    assert out["family"].unique().to_list() == [family]
    for view in ("test_rewrite", "test_decode"):
        assert u_of(out, k=1, view=view) == pytest.approx(ALL_A[view])
        assert u_of(out, k=2, view=view) == pytest.approx(ALL_B[view])


def test_protocols_with_different_queries_are_fitted_separately(monkeypatch):
    data = hand_data()
    sub = _subgrid(data.train_ids, PROTOCOLS)
    # Protocol (1, 1) lost cell (q0, B): q0 leaves that protocol only.
    sub = sub.filter(
        ~((pl.col("k") == 1) & (pl.col("query_id") == "q0") & (pl.col("model") == "B"))
    )
    protocols = protocol_targets(sub, data.train_ids, MODELS)
    assert [(p.k, p.m) for p in protocols] == [(1, 1), (2, 2)]
    assert protocols[0].rows == [1, 2, 3, 4, 5] and protocols[1].rows == [0, 1, 2, 3, 4, 5]

    knn = cheap("knn")
    monkeypatch.setattr(type(knn), "fit_many", lambda *a, **k: pytest.fail("batched fit used"))
    routers = fit_protocols(knn, data.X_train, protocols)
    assert [r.n_features_in_ for r in routers] == [4, 4]
    assert routers[0].X_train_.shape[0] == 5 and routers[1].X_train_.shape[0] == 6


def test_protocol_targets_errors():
    ids = ["q0", "q1"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['k', 'm'\]"):
        protocol_targets(constant_targets(ids, PROTOCOLS[(1, 1)]), ids, MODELS)
    only_a = _subgrid(ids, {(1, 1): {"A": (0.5, 0.0, 0.0)}})
    with pytest.raises(ValueError, match=r"protocol \(k=1, m=1\) has no train query"):
        protocol_targets(only_a, ids, MODELS)
    with pytest.raises(ValueError, match=r"protocol \(k=1, m=1\).*not in the train split"):
        protocol_targets(_subgrid(["zz"], {(1, 1): PROTOCOLS[(1, 1)]}), ids, MODELS)


def test_view_pivots_utility_by_protocol():
    data = hand_data()
    sub = _subgrid(data.train_ids, PROTOCOLS)
    out = sample_efficiency(sub, data, {"knn": cheap("knn")}, lam=LAM, beta=0.2, n_boot=20)
    [view] = SPEC.view({"sample_efficiency": out})
    assert view.frame.columns == ["dataset", "view", "family", "1×1", "2×2"]
    assert view.frame.height == 2


# ------------------------------------------------------------------------------------------------
# a small simulated store
# ------------------------------------------------------------------------------------------------
DATASET = "demo_mc"
N_TRAIN, N_TEST = 14, 6
FAMILIES = ["knn", "avengers_pro", "mirt"]
BETAS = [0.0, 0.2, 1.0]


def _write_test_views(exp, root) -> None:
    """Simulated test observations: 2 rewrites × 1 decode and the original × 2 decodes."""
    from dars.sim import SimWorld

    items = load_splits(exp)[DATASET]["test"]
    world = SimWorld()
    world.register_items(DATASET, items)
    specs = exp.pool.models
    names = {world.model(s.litellm_model).name: s.name for s in specs}
    ids = [it.query_id for it in items]
    for view, rewrites, decodes in (("test_rewrite", [0, 1], [0]), ("test_decode", [-1], [0, 1])):
        frame = world.simulate_frame(
            DATASET, ids, [s.litellm_model for s in specs], rewrite_ids=rewrites, decode_ids=decodes
        ).with_columns(pl.col("model").replace_strict(names))
        write_observations(root, observation_rows(frame, split="test", view=view), shard=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    exp = sim_experiment(
        root, n_train=N_TRAIN, n_items=N_TRAIN + N_TEST, train_rewrites=3, train_decodes=2, draws=3
    )
    exp = exp.model_copy(
        update={
            "encoder": "tfidf",
            "families": FAMILIES,
            "evaluation": Evaluation(beta_grid=BETAS, n_boot=50),
        }
    )
    write_sim_store(exp, root)
    _write_test_views(exp, root)
    supervise_dataset(exp, DATASET, n_boot=10)
    return exp, root


@pytest.fixture(scope="module")
def results(store):
    exp, _ = store
    se = run_experiment(exp, "sample_efficiency")["sample_efficiency"]
    return se, run_experiment(exp, "beta")["beta"]


def test_results_have_the_contract_shape_and_are_written(store, results):
    exp, root = store
    se, beta = results
    protocols = [(1, 1), (1, 2), (2, 2), (3, 1), (3, 2)]  # subgrid_protocols(3, 2)
    assert se.schema == pl.Schema(SAMPLE_EFFICIENCY_COLUMNS)
    assert se.height == len(FAMILIES) * len(protocols) * 2
    assert se["family"].unique(maintain_order=True).to_list() == FAMILIES
    assert sorted(set(se.select("k", "m").rows())) == protocols
    assert (se["n_obs"] == se["k"].cast(pl.Int64) * se["m"]).all()
    assert beta.schema == pl.Schema(BETA_COLUMNS)
    assert beta.height == len(FAMILIES) * len(BETAS) * 2
    assert sorted(beta["beta"].unique().to_list()) == BETAS
    for table in (se, beta):
        assert set(table["dataset"]) == {DATASET}
        assert set(table["view"]) == {"test_rewrite", "test_decode"}
        assert table.select(pl.col("Q", "C").is_between(0, 1).all()).row(0) == (True, True)
        assert (table["U_low"] <= table["U_high"]).all()
    assert read_result(root, "sample_efficiency").equals(se)
    assert read_result(root, "beta").equals(beta)
    assert read_context(root, "beta")["beta"] == exp.beta


def test_full_protocol_equals_the_dars_router_at_the_experiment_beta(store, results):
    """The (K, M) sub-grid is the whole training grid, so its router is the DARS router, which
    the β sweep also evaluates at β = exp.beta."""
    exp, _ = store
    se, beta = results
    full = se.filter((pl.col("k") == 3) & (pl.col("m") == 2)).sort("family", "view")
    at = beta.filter(pl.col("beta") == exp.beta).sort("family", "view")
    for col in ("U", "Q", "C", "U_low", "U_high"):
        np.testing.assert_allclose(full[col].to_numpy(), at[col].to_numpy(), atol=1e-12)


@pytest.mark.parametrize("family", ["knn", "avengers_pro", "mirt", "mlp"])
def test_batched_protocol_fits_equal_separate_fits(store, family):
    exp, root = store
    inputs = read_inputs(exp, [VIEW_UTILITIES, EMBEDDINGS])
    data = sweep_data(
        DATASET, exp.pool.names, inputs[EMBEDDINGS][DATASET], inputs[VIEW_UTILITIES][DATASET]
    )
    protocols = protocol_targets(
        read_supervision(root, DATASET, "subgrid"), data.train_ids, data.models
    )
    assert len({tuple(p.rows) for p in protocols}) == 1  # the batched path is taken
    proto = cheap(family).set_params(random_state=exp.seed)
    batched = fit_protocols(proto, data.X_train, protocols)
    separate = [clone(proto).fit(data.X_train[p.rows], p.targets) for p in protocols]
    np.testing.assert_array_equal(
        route_many(batched, data.X_test, exp.lam, exp.beta),
        route_many(separate, data.X_test, exp.lam, exp.beta),
    )
    for b, s in zip(batched, separate, strict=True):
        sb, ss = b.predict_stats(data.X_test), s.predict_stats(data.X_test)
        np.testing.assert_allclose(sb.q, ss.q, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sb.sigma, ss.sigma, rtol=1e-5, atol=1e-6)


def test_load_test_views_scores_both_views_of_every_test_query(store):
    exp, _ = store
    vu = load_test_views(exp, DATASET)
    assert vu.height == 2 * N_TEST * len(exp.pool.names)
    n_obs = vu.group_by("view").agg(pl.col("n_obs").max()).sort("view").rows()
    assert n_obs == [("test_decode", 2), ("test_rewrite", 2)]


def test_missing_inputs_name_the_file_and_the_command(store, tmp_path):
    exp, root = store
    with pytest.raises(FileNotFoundError, match=r"no ok test observations.*`dars collect`"):
        load_test_views(exp.model_copy(update={"root": str(tmp_path / "empty")}), DATASET)

    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    moved = exp.model_copy(update={"root": str(copy)})
    RunLayout(copy).supervision_file(DATASET, "subgrid").unlink()
    with pytest.raises(FileNotFoundError, match=r"'subgrid'.*subgrid\.parquet.*dars supervise"):
        run_experiment(moved, "sample_efficiency")
    assert not result_exists(copy, "sample_efficiency") or result_exists(root, "sample_efficiency")

    for model in exp.pool.names:  # storage owns the paths: remove every test partition
        shutil.rmtree(RunLayout(copy).observation_partition(DATASET, "test", model))
    with pytest.raises(FileNotFoundError, match=r"demo_mc.*observations.*`dars collect`"):
        run_experiment(moved, "beta")


def test_unknown_sweep_family_fails_before_any_input_is_read(store, tmp_path):
    exp, _ = store
    # The config rejects the name at load; an experiment built in code without validation
    # (model_construct / model_copy) must still fail before any input is read.
    with pytest.raises(ValueError, match="unknown router family 'nope'"):
        Evaluation(sweep_families=["nope"])
    unchecked = exp.evaluation.model_copy(update={"sweep_families": ["nope"]})
    bad = exp.model_copy(update={"root": str(tmp_path), "evaluation": unchecked})
    for name in ("sample_efficiency", "beta"):
        with pytest.raises(ValueError, match=r"unknown router famil\(ies\) \['nope'\]"):
            run_experiment(bad, name)
