"""Sample-efficiency and β sweeps (dars.evaluation.sweeps).

Hand-made cases: 3 test queries × 2 models (A costs nothing, B costs the full range), with
training targets that are the same for every training query, so knn and avengers_pro (averages
of neighbour / cluster targets) predict exactly those targets and the routes follow by hand:

test view utilities (lam = 0.05, c_A = 0, c_B = 1)
                 q_A      q_B       u_A          u_B
test_rewrite   1, 0, 1  1, 1, 0   1, 0, 1    .95, .95, -.05
test_decode    0, 1, 1  1, 1, 1   0, 1, 1    .95, .95, .95

All-A routing: U_rew = 2/3, U_dec = 2/3; all-B: U_rew = 1.85/3, U_dec = 0.95.

A small simulated store (train grid 3 rewrites × 2 decodes, two test views) covers the I/O
functions, the batched-vs-separate fits and the error messages.
"""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone

from dars.benchmarks.loading import load_splits
from dars.config import Evaluation
from dars.evaluation.metrics import VIEW_UTIL_COLUMNS, bootstrap_ci
from dars.evaluation.results import read_context, read_result
from dars.evaluation.stage import load_test_views
from dars.evaluation.sweeps import (
    BETA_COLUMNS,
    SAMPLE_EFFICIENCY_COLUMNS,
    SweepData,
    beta_sweep,
    evaluate_beta,
    evaluate_sample_efficiency,
    fit_protocols,
    load_sweep_data,
    protocol_targets,
    sample_efficiency,
    score_route_sets,
    sweep_families,
)
from dars.routers import make_router, route_many, targets_from_frame
from dars.routers.training import training_targets
from dars.storage import RunLayout, write_observations
from dars.storage.supervision_store import read_supervision
from dars.tasks.supervise import supervise_dataset
from tests.simstore import observation_rows, sim_experiment, write_sim_store

LAM = 0.05
MODELS = ("A", "B")
TEST_IDS = ["t0", "t1", "t2"]
Q_TEST = {
    "test_rewrite": {"A": [1.0, 0.0, 1.0], "B": [1.0, 1.0, 0.0]},
    "test_decode": {"A": [0.0, 1.0, 1.0], "B": [1.0, 1.0, 1.0]},
}
C_TEST = {"A": 0.0, "B": 1.0}
ALL_A = {"test_rewrite": 2 / 3, "test_decode": 2 / 3}
ALL_B = {"test_rewrite": 1.85 / 3, "test_decode": 0.95}


def _view_util() -> pl.DataFrame:
    rows = [
        {
            "dataset": "d",
            "view": view,
            "query_id": qid,
            "model": model,
            "n_obs": 2,
            "q": qs[i],
            "c": C_TEST[model],
            "u": qs[i] - LAM * C_TEST[model],
        }
        for view, per_model in Q_TEST.items()
        for model, qs in per_model.items()
        for i, qid in enumerate(TEST_IDS)
    ]
    return pl.DataFrame(rows).select(VIEW_UTIL_COLUMNS).sort("dataset", "view", "query_id", "model")


def _hand_data(n_train: int = 6) -> SweepData:
    rng = np.random.default_rng(0)
    return SweepData(
        dataset="d",
        models=MODELS,
        train_ids=[f"q{i}" for i in range(n_train)],
        X_train=rng.normal(size=(n_train, 4)),
        test_ids=TEST_IDS,
        X_test=rng.normal(size=(len(TEST_IDS), 4)),
        view_util=_view_util(),
    )


def _constant_targets(train_ids, per_model: dict[str, tuple[float, float, float]]) -> pl.DataFrame:
    """Supervision rows giving every query the same (q_mean, c_mean, q_std) per model."""
    return pl.DataFrame(
        [
            {
                "dataset": "d",
                "query_id": q,
                "model": m,
                "q_mean": v[0],
                "c_mean": v[1],
                "q_std": v[2],
            }
            for q in train_ids
            for m, v in per_model.items()
        ]
    )


def _cheap(family: str):
    router = make_router(family, random_state=0)
    if family == "avengers_pro":
        router.set_params(n_clusters=2, n_init=1)
    if family in ("mirt", "embedllm", "rm_softmax"):
        router.set_params(epochs=20)
    if family == "mlp":
        router.set_params(hidden_layer_sizes=(8,), max_iter=30)
    return router


def _u(frame: pl.DataFrame, **key) -> float:
    rows = frame.filter(*[pl.col(k) == v for k, v in key.items()])
    assert rows.height == 1, (key, rows)
    return rows["U"][0]


# ------------------------------------------------------------------------------------------------
# score_route_sets
# ------------------------------------------------------------------------------------------------
def test_score_routes_hand_computed():
    vu = _view_util()
    routes = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0]])
    keys = pl.DataFrame({"policy": ["all_A", "all_B", "mixed"]})
    out = score_route_sets(routes, TEST_IDS, MODELS, vu, dataset="d", keys=keys, n_boot=20, seed=3)

    assert out.columns == [
        "policy",
        "dataset",
        "view",
        "n_queries",
        "U",
        "U_low",
        "U_high",
        "Q",
        "C",
    ]
    # One row per (route set, view), route sets in input order.
    assert out["policy"].to_list() == ["all_A"] * 2 + ["all_B"] * 2 + ["mixed"] * 2
    assert out["view"].to_list() == ["test_decode", "test_rewrite"] * 3
    assert out["n_queries"].to_list() == [3] * 6
    for view in ("test_rewrite", "test_decode"):
        assert _u(out, policy="all_A", view=view) == pytest.approx(ALL_A[view])
        assert _u(out, policy="all_B", view=view) == pytest.approx(ALL_B[view])
    # mixed: t0 -> B, t1 -> A, t2 -> A
    mixed = out.filter(pl.col("policy") == "mixed", pl.col("view") == "test_rewrite").row(
        0, named=True
    )
    assert mixed["U"] == pytest.approx((0.95 + 0 + 1) / 3)
    assert mixed["Q"] == pytest.approx(2 / 3) and mixed["C"] == pytest.approx(1 / 3)
    # The CI is bootstrap_ci of the per-query utilities (sorted by query id) with the seed.
    lo, hi = bootstrap_ci([0.95, 0.0, 1.0], n_boot=20, seed=3)
    assert (mixed["U_low"], mixed["U_high"]) == (lo, hi)
    assert (out["U_low"] <= out["U"] + 1e-12).all() and (out["U"] <= out["U_high"] + 1e-12).all()


def test_score_routes_errors():
    vu = _view_util()
    with pytest.raises(ValueError, match="non-empty"):
        score_route_sets(np.array([0, 1, 0]), TEST_IDS, MODELS, vu, dataset="d")
    with pytest.raises(ValueError, match="keys has 1 rows for 2 route sets"):
        score_route_sets(
            np.zeros((2, 3), int), TEST_IDS, MODELS, vu, dataset="d", keys=pl.DataFrame({"a": [1]})
        )
    # A test query the views score but the routes skip.
    with pytest.raises(ValueError, match="do not route test query 't2'"):
        score_route_sets(np.zeros((1, 2), int), TEST_IDS[:2], MODELS, vu, dataset="d")
    # A routed cell with no test observation.
    holed = vu.filter(~((pl.col("query_id") == "t1") & (pl.col("model") == "B")))
    with pytest.raises(ValueError, match="no test observation for routed cell.*'t1'.*'B'"):
        score_route_sets(np.ones((1, 3), int), TEST_IDS, MODELS, holed, dataset="d")


# ------------------------------------------------------------------------------------------------
# β sweep, hand-checked
# ------------------------------------------------------------------------------------------------
# A: q=0.8, σ=0.4; B: q=0.7, σ=0; both c=0 in training. u_A = 0.8 - 0.4β > u_B = 0.7 iff β < 0.25.
RISKY_A = {"A": (0.8, 0.0, 0.4), "B": (0.7, 0.0, 0.0)}


@pytest.mark.parametrize("family", ["knn", "avengers_pro"])
def test_beta_sweep_switches_to_the_safe_model_past_the_crossing(family):
    data = _hand_data()
    dars = _constant_targets(data.train_ids, RISKY_A)
    betas = [0.0, 0.1, 0.5, 1.0]
    out = beta_sweep(dars, data, {family: _cheap(family)}, betas=betas, lam=LAM, n_boot=50, seed=0)
    assert out.schema == pl.Schema(BETA_COLUMNS)
    assert out.height == len(betas) * 2
    assert out["beta"].to_list() == [b for b in betas for _ in range(2)]
    for view in ("test_rewrite", "test_decode"):
        for b in betas:
            want = ALL_A[view] if b < 0.25 else ALL_B[view]
            assert _u(out, beta=b, view=view) == pytest.approx(want)


def test_beta_zero_equals_the_router_trained_without_sigma():
    """knn's q, c do not depend on σ: at β = 0 it routes like knn trained on σ-free targets."""
    data = _hand_data(n_train=12)
    rng = np.random.default_rng(1)
    dars = pl.DataFrame(
        [
            {
                "query_id": q,
                "model": m,
                "q_mean": rng.uniform(),
                "c_mean": rng.uniform(),
                "q_std": rng.uniform(0, 0.5),
            }
            for q in data.train_ids
            for m in MODELS
        ]
    )
    out = beta_sweep(dars, data, {"knn": _cheap("knn")}, betas=[0.0, 5.0], lam=LAM, n_boot=50)
    no_sigma = targets_from_frame(dars, data.train_ids, MODELS, sigma_col=None)
    plain = _cheap("knn").fit(data.X_train, no_sigma).route(data.X_test, LAM, 0.0)
    ref = score_route_sets(plain[None], TEST_IDS, MODELS, data.view_util, dataset="d", n_boot=50)
    at0 = out.filter(pl.col("beta") == 0.0).sort("view")
    assert at0.select("view", "U", "U_low", "U_high", "Q", "C").equals(
        ref.select("view", "U", "U_low", "U_high", "Q", "C").sort("view")
    )


def test_beta_folding_family_is_refitted_per_beta():
    data = _hand_data(n_train=8)
    rng = np.random.default_rng(2)
    dars = pl.DataFrame(
        [
            {"query_id": q, "model": m, "q_mean": rng.uniform(), "c_mean": 0.5, "q_std": 0.3}
            for q in data.train_ids
            for m in MODELS
        ]
    )
    proto = _cheap("embedllm")
    betas = [0.0, 0.7]
    out = beta_sweep(dars, data, {"embedllm": proto}, betas=betas, lam=LAM, n_boot=50)
    _, targets = training_targets(dars, "dars", data.train_ids, MODELS)
    for b in betas:
        # A router fitted at β only answers for that β: the sweep must have refitted it.
        ref = clone(proto).set_params(beta=b).fit(data.X_train, targets)
        routes = ref.route(data.X_test, LAM, b)[None]
        want = score_route_sets(routes, TEST_IDS, MODELS, data.view_util, dataset="d", n_boot=50)
        got = out.filter(pl.col("beta") == b).sort("view")
        np.testing.assert_allclose(got["U"].to_numpy(), want.sort("view")["U"].to_numpy())
    assert proto.get_params()["beta"] == 0.2  # the prototype itself is untouched


# ------------------------------------------------------------------------------------------------
# sample efficiency, hand-checked
# ------------------------------------------------------------------------------------------------
def _subgrid(train_ids, protocols: dict[tuple[int, int], dict]) -> pl.DataFrame:
    return pl.concat(
        _constant_targets(train_ids, per_model).with_columns(
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
    data = _hand_data()
    sub = _subgrid(data.train_ids, PROTOCOLS)
    out = sample_efficiency(
        sub, data, {family: _cheap(family)}, lam=LAM, beta=0.2, n_boot=50, seed=0
    )
    assert out.schema == pl.Schema(SAMPLE_EFFICIENCY_COLUMNS)
    assert out.select("k", "m", "n_obs").rows() == [(1, 1, 1)] * 2 + [(2, 2, 4)] * 2
    assert out["family"].unique().to_list() == [family]
    for view in ("test_rewrite", "test_decode"):
        assert _u(out, k=1, view=view) == pytest.approx(ALL_A[view])
        assert _u(out, k=2, view=view) == pytest.approx(ALL_B[view])


def test_protocols_with_different_queries_are_fitted_separately(monkeypatch):
    data = _hand_data()
    sub = _subgrid(data.train_ids, PROTOCOLS)
    # Protocol (1, 1) lost cell (q0, B): q0 leaves that protocol only.
    sub = sub.filter(
        ~((pl.col("k") == 1) & (pl.col("query_id") == "q0") & (pl.col("model") == "B"))
    )
    protocols = protocol_targets(sub, data.train_ids, MODELS)
    assert [(p.k, p.m) for p in protocols] == [(1, 1), (2, 2)]
    assert protocols[0].rows == [1, 2, 3, 4, 5] and protocols[1].rows == [0, 1, 2, 3, 4, 5]

    knn = _cheap("knn")
    monkeypatch.setattr(type(knn), "fit_many", lambda *a, **k: pytest.fail("batched fit used"))
    routers = fit_protocols(knn, data.X_train, protocols)
    assert [r.n_features_in_ for r in routers] == [4, 4]
    assert routers[0].X_train_.shape[0] == 5 and routers[1].X_train_.shape[0] == 6


def test_protocol_targets_errors():
    ids = ["q0", "q1"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['k', 'm'\]"):
        protocol_targets(_constant_targets(ids, PROTOCOLS[(1, 1)]), ids, MODELS)
    only_a = _subgrid(ids, {(1, 1): {"A": (0.5, 0.0, 0.0)}})
    with pytest.raises(ValueError, match=r"protocol \(k=1, m=1\) has no train query"):
        protocol_targets(only_a, ids, MODELS)
    with pytest.raises(ValueError, match=r"protocol \(k=1, m=1\).*not in the train split"):
        protocol_targets(_subgrid(["zz"], {(1, 1): PROTOCOLS[(1, 1)]}), ids, MODELS)


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
            "routers": FAMILIES,
            "evaluation": Evaluation(beta_grid=BETAS, n_boot=50),
        }
    )
    write_sim_store(exp, root)
    _write_test_views(exp, root)
    supervise_dataset(exp, DATASET, n_boot=10)
    return exp, root


@pytest.fixture(scope="module")
def results(store):
    exp, root = store
    return evaluate_sample_efficiency(exp, root), evaluate_beta(exp, root)


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
    data = load_sweep_data(exp, root, DATASET)
    protocols = protocol_targets(
        read_supervision(root, DATASET, "subgrid"), data.train_ids, data.models
    )
    assert len({tuple(p.rows) for p in protocols}) == 1  # the batched path is taken
    proto = _cheap(family).set_params(random_state=exp.seed)
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
    exp, root = store
    vu = load_test_views(exp, root, DATASET)
    assert vu.height == 2 * N_TEST * len(exp.pool.names)
    n_obs = vu.group_by("view").agg(pl.col("n_obs").max()).sort("view").rows()
    assert n_obs == [("test_decode", 2), ("test_rewrite", 2)]


def test_missing_inputs_name_the_file_and_the_command(store, tmp_path):
    exp, root = store
    with pytest.raises(FileNotFoundError, match=r"no ok test observations.*`dars collect`"):
        load_test_views(exp, tmp_path / "empty", DATASET)

    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    RunLayout(copy).supervision_file(DATASET, "subgrid").unlink()
    with pytest.raises(FileNotFoundError, match=r"'subgrid'.*subgrid\.parquet.*dars supervise"):
        evaluate_sample_efficiency(exp, copy)

    for part in RunLayout(copy).observations_dir().glob("dataset=*/split=test"):
        shutil.rmtree(part)
    with pytest.raises(FileNotFoundError, match=r"demo_mc.*observations.*`dars collect`"):
        evaluate_beta(exp, copy)


def test_sweep_families_default_to_the_routers_and_reject_unknown_names(store):
    exp, _ = store
    assert sweep_families(exp) == FAMILIES
    only = exp.model_copy(update={"evaluation": Evaluation(sweep_families=["mirt"])})
    assert sweep_families(only) == ["mirt"]
    bad = exp.model_copy(update={"evaluation": Evaluation(sweep_families=["nope"])})
    with pytest.raises(ValueError, match=r"unknown router famil\(ies\) \['nope'\]; valid: .*knn"):
        sweep_families(bad)
