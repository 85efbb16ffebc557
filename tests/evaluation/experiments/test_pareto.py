"""The Pareto experiment (dars.evaluation.experiments.pareto): hand-computed points and budget
frontier, a slow reference for the frontier, and the experiment on a tiny simulated store run
through the evaluate task.

The worked example: dataset ``d``, view ``test_rewrite``, 3 queries × 3 models (q, c):

          A           B           C
    q1    0.0, 0.0    0.5, 0.2    1.0, 1.0
    q2    1.0, 0.0    1.0, 0.2    1.0, 1.0
    q3    0.0, 0.0    1.0, 0.2    0.5, 1.0

Fixed models: A (Q 1/3, C 0), B (5/6, 0.2), C (5/6, 1).
Routes — dars: λ=0 → (C, A, B): Q 1, C 0.4; λ=1 → (B, A, B): Q 5/6, C 0.4/3.
single_shot, 2 draws: λ=0 → (C, C, C) and (A, A, A): Q 5/6 and 1/3, C 1 and 0;
λ=1 → (B, B, B) twice: Q 5/6, C 0.2.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.evaluation.experiments.pareto import (
    BUDGET_COLUMNS,
    PARETO_COLUMNS,
    SPEC,
    budget_frontier,
    pareto_points,
)
from dars.evaluation.metrics import VIEW_UTIL_COLUMNS, router_utilities
from dars.storage import RunLayout
from dars.storage.results import read_context, read_result
from dars.tasks.evaluate import run_experiment

QC = {
    ("q1", "A"): (0.0, 0.0),
    ("q1", "B"): (0.5, 0.2),
    ("q1", "C"): (1.0, 1.0),
    ("q2", "A"): (1.0, 0.0),
    ("q2", "B"): (1.0, 0.2),
    ("q2", "C"): (1.0, 1.0),
    ("q3", "A"): (0.0, 0.0),
    ("q3", "B"): (1.0, 0.2),
    ("q3", "C"): (0.5, 1.0),
}
ROUTES = {
    ("dars", 0.0, 0): ["C", "A", "B"],
    ("dars", 1.0, 0): ["B", "A", "B"],
    ("single_shot", 0.0, 0): ["C", "C", "C"],
    ("single_shot", 0.0, 1): ["A", "A", "A"],
    ("single_shot", 1.0, 0): ["B", "B", "B"],
    ("single_shot", 1.0, 1): ["B", "B", "B"],
}


def _view_util(view: str = "test_rewrite", drop: tuple[str, str] | None = None) -> pl.DataFrame:
    rows = [
        {
            "dataset": "d",
            "view": view,
            "query_id": qid,
            "model": m,
            "n_obs": 2,
            "q": q,
            "c": c,
            # at λ = 0.05; pareto_points must not use it
            "u": q - 0.05 * c,
        }
        for (qid, m), (q, c) in QC.items()
        if (qid, m) != drop
    ]
    return pl.DataFrame(rows).select(VIEW_UTIL_COLUMNS)


def _routes(routes: dict = ROUTES, family: str = "knn") -> pl.DataFrame:
    rows = [
        {
            "dataset": "d",
            "family": family,
            "supervision": supervision,
            "lam": lam,
            "draw": draw,
            "query_id": qid,
            "model": m,
        }
        for (supervision, lam, draw), models in routes.items()
        for qid, m in zip(("q1", "q2", "q3"), models, strict=True)
    ]
    return pl.DataFrame(rows, schema_overrides={"draw": pl.Int32})


def _point(frame: pl.DataFrame, **key) -> dict:
    sel = frame
    for k, v in key.items():
        sel = sel.filter(pl.col(k).is_null() if v is None else pl.col(k) == v)
    assert sel.height == 1, (key, sel)
    return sel.row(0, named=True)


# ------------------------------------------------------------------------------------------------
# pareto_points
# ------------------------------------------------------------------------------------------------
def test_pareto_points_hand_computed():
    p = pareto_points(_routes(), _view_util())
    assert p.schema == pl.Schema(PARETO_COLUMNS)
    assert p.height == 4 + 3  # (2 supervisions × 2 λ) + 3 fixed models

    d0 = _point(p, supervision="dars", lam=0.0)
    assert (d0["n_draws"], d0["Q"], d0["C"], d0["U"]) == (1, 1.0, pytest.approx(0.4), 1.0)
    assert d0["Q_std"] is None and d0["C_std"] is None and d0["model"] is None
    d1 = _point(p, supervision="dars", lam=1.0)
    assert d1["Q"] == pytest.approx(5 / 6) and d1["C"] == pytest.approx(0.4 / 3)
    assert d1["U"] == pytest.approx(5 / 6 - 0.4 / 3)

    s0 = _point(p, supervision="single_shot", lam=0.0)
    assert s0["n_draws"] == 2
    assert s0["Q"] == pytest.approx(7 / 12) and s0["C"] == pytest.approx(0.5)
    assert s0["U"] == pytest.approx(7 / 12)
    assert s0["Q_std"] == pytest.approx(0.5 / math.sqrt(2))
    assert s0["C_std"] == pytest.approx(1 / math.sqrt(2))
    s1 = _point(p, supervision="single_shot", lam=1.0)
    assert s1["Q"] == pytest.approx(5 / 6) and s1["C"] == pytest.approx(0.2)
    assert s1["U"] == pytest.approx(5 / 6 - 0.2)
    assert (s1["Q_std"], s1["C_std"]) == (0.0, 0.0)

    fixed = p.filter(pl.col("supervision") == "fixed")
    assert fixed["family"].to_list() == ["fixed"] * 3
    assert fixed["model"].to_list() == ["A", "B", "C"]
    assert fixed["Q"].to_list() == pytest.approx([1 / 3, 5 / 6, 5 / 6])
    assert fixed["C"].to_list() == pytest.approx([0.0, 0.2, 1.0])
    assert fixed["lam"].null_count() == 3 and fixed["U"].null_count() == 3
    assert fixed["n_draws"].to_list() == [1, 1, 1]


def test_pareto_points_scores_each_view_and_agrees_with_router_utilities():
    # A second view with other q: each view gets its own points, equal to router_utilities of
    # the same routes, with U = Q - λC at the point's λ.
    dec = _view_util("test_decode").with_columns(q=1.0 - pl.col("q"))
    vu = pl.concat([_view_util(), dec])
    p = pareto_points(_routes(), vu)
    assert sorted(p["view"].unique().to_list()) == ["test_decode", "test_rewrite"]
    for (supervision, lam, draw), models in ROUTES.items():
        if supervision != "dars":
            continue
        one = _routes({(supervision, lam, draw): models}).drop("family", "supervision", "lam")
        for r in router_utilities(one, vu).iter_rows(named=True):
            got = _point(p, view=r["view"], supervision="dars", lam=lam)
            assert got["Q"] == pytest.approx(r["Q"]) and got["C"] == pytest.approx(r["C"])
            assert got["U"] == pytest.approx(r["Q"] - lam * r["C"])


def test_pareto_points_errors():
    with pytest.raises(ValueError, match="supervision"):
        pareto_points(_routes().with_columns(supervision=pl.lit("without_risk")), _view_util())
    two = {**ROUTES, ("dars", 0.0, 1): ["A", "A", "A"]}
    with pytest.raises(ValueError, match="supervision 'dars' has 2 draws"):
        pareto_points(_routes(two), _view_util())
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        pareto_points(_routes().with_columns(lam=pl.lit(-1.0)), _view_util())
    with pytest.raises(ValueError, match="lacks column"):
        pareto_points(_routes().drop("lam"), _view_util())
    skipped = _routes().filter(~((pl.col("lam") == 1.0) & (pl.col("query_id") == "q3")))
    with pytest.raises(ValueError, match="do not route test query 'q3'"):
        pareto_points(skipped, _view_util())
    # A hole in the view: the routed cell (q1, C) has no observation.
    with pytest.raises(ValueError, match="no test observation for routed cell"):
        pareto_points(_routes(), _view_util(drop=("q1", "C")))
    only_a = {("dars", 0.0, 0): ["A", "A", "A"]}
    with pytest.raises(ValueError, match="model 'C' has 2 of the 3 test queries"):
        pareto_points(_routes(only_a), _view_util(drop=("q1", "C")))


# ------------------------------------------------------------------------------------------------
# budget_frontier
# ------------------------------------------------------------------------------------------------
def test_budget_frontier_hand_computed():
    p = pareto_points(_routes(), _view_util())
    f = budget_frontier(p, [1.0, 0.0, 0.1, 0.2, 0.5, 0.2])
    assert f.schema == pl.Schema(BUDGET_COLUMNS)
    assert f.height == 3 * 5  # (fixed, dars, single_shot) × distinct budgets

    def col(supervision, name):
        return f.filter(pl.col("supervision") == supervision).sort("budget")[name].to_list()

    assert col("dars", "budget") == [0.0, 0.1, 0.2, 0.5, 1.0]
    assert col("dars", "lam") == [None, None, 1.0, 0.0, 0.0]
    assert col("dars", "Q") == [None, None, pytest.approx(5 / 6), 1.0, 1.0]
    # single_shot: λ=0 costs 0.5 on average but its mean Q (7/12) is below λ=1's.
    assert col("single_shot", "lam") == [None, None, 1.0, 1.0, 1.0]
    # 0.2 is in budget 0.2 although the mean of three 0.2 costs is 0.20000000000000004;
    # B and C tie on Q at budget 1: the cheaper one wins.
    assert col("fixed", "model") == ["A", "A", "B", "B", "B"]
    assert col("fixed", "lam") == [None] * 5
    assert col("fixed", "C") == pytest.approx([0.0, 0.0, 0.2, 0.2, 0.2])
    assert f.filter(pl.col("supervision") != "fixed")["model"].null_count() == 10


def test_budget_frontier_errors():
    p = pareto_points(_routes(), _view_util())
    with pytest.raises(ValueError, match="budgets is empty"):
        budget_frontier(p, [])
    with pytest.raises(ValueError, match="finite and >= 0"):
        budget_frontier(p, [0.1, -0.2])
    with pytest.raises(ValueError, match="lacks column"):
        budget_frontier(p.drop("C"), [0.1])


def _slow_frontier(points: list[dict], budgets: list[float]) -> dict:
    out = {}
    for key in {(r["family"], r["supervision"]) for r in points}:
        for b in budgets:
            fits = [
                r for r in points if (r["family"], r["supervision"]) == key and r["C"] <= b + 1e-9
            ]
            out[(*key, b)] = max((r["Q"] for r in fits), default=None)
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([("knn", "dars"), ("knn", "single_shot"), ("fixed", "fixed")]),
            st.floats(0, 1),
            st.floats(0, 1),
        ),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.floats(0, 1.2), min_size=1, max_size=6),
)
def test_budget_frontier_matches_slow_reference_and_is_monotone(points, budgets):
    rows = [
        {
            "dataset": "d",
            "view": "test_rewrite",
            "family": fam,
            "supervision": supervision,
            "lam": None if supervision == "fixed" else float(i),
            "model": f"m{i}" if supervision == "fixed" else None,
            "Q": q,
            "C": c,
        }
        for i, ((fam, supervision), q, c) in enumerate(points)
    ]
    frame = pl.DataFrame(rows, schema={k: PARETO_COLUMNS[k] for k in rows[0]})
    f = budget_frontier(frame, budgets)
    slow = _slow_frontier(rows, budgets)
    assert f.height == len(slow)
    for r in f.iter_rows(named=True):
        assert r["Q"] == slow[(r["family"], r["supervision"], r["budget"])]
        if r["Q"] is not None:
            assert r["C"] <= r["budget"] + 1e-9
    for _, curve in f.group_by("family", "supervision"):
        q = curve.sort("budget")["Q"].fill_null(-1.0).to_numpy()
        assert np.all(np.diff(q) >= 0)


# ------------------------------------------------------------------------------------------------
# the experiment on a tiny simulated store
# ------------------------------------------------------------------------------------------------
DATASET = "demo_mc"
N_TRAIN, N_TEST, DRAWS = 16, 8, 4
GRID = [0.0, 0.05, 2.0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from dars.benchmarks.loading import load_splits
    from dars.config import Evaluation
    from dars.sim import SimWorld
    from dars.storage import write_observations
    from dars.tasks.supervise import supervise_dataset
    from dars.tasks.train import train_router
    from tests.simstore import observation_rows, sim_experiment, write_sim_store

    root = tmp_path_factory.mktemp("pareto")
    exp = sim_experiment(
        root,
        n_train=N_TRAIN,
        n_items=N_TRAIN + N_TEST,
        train_rewrites=2,
        train_decodes=2,
        draws=DRAWS,
    )
    ev = Evaluation(sweep_families=["knn"], lam_grid=GRID, budgets=[0.1, 0.5, 1.0])
    exp = exp.model_copy(update={"encoder": "tfidf", "evaluation": ev})
    write_sim_store(exp, root)
    # Test views as the collect stage stores them: rewrites 0..1 decoded once; the original
    # decoded 3 times.
    items = load_splits(exp)[DATASET]["test"]
    world = SimWorld()
    world.register_items(DATASET, items)
    specs = exp.pool.models
    names = {world.model(s.litellm_model).name: s.name for s in specs}
    ids = [it.query_id for it in items]
    for view, rids, dids in (("test_rewrite", [0, 1], [0]), ("test_decode", [-1], [0, 1, 2])):
        frame = world.simulate_frame(
            DATASET, ids, [s.litellm_model for s in specs], rewrite_ids=rids, decode_ids=dids
        ).with_columns(pl.col("model").replace_strict(names))
        write_observations(root, observation_rows(frame, split="test", view=view), shard=0)
    supervise_dataset(exp, DATASET, n_boot=20)
    for supervision in ("single_shot", "dars"):
        train_router(exp, DATASET, "knn", supervision)
    return exp, root


def test_pareto_writes_both_results(store):
    exp, root = store
    p = run_experiment(exp, "pareto")["pareto"]
    assert p.equals(read_result(root, "pareto"))
    n_models = len(exp.pool.names)
    assert p.height == 2 * (2 * len(GRID) + n_models)
    sweep = p.filter(pl.col("supervision") != "fixed")
    assert sweep["family"].unique().to_list() == ["knn"]
    assert sorted(sweep["lam"].unique().to_list()) == GRID
    assert set(sweep.filter(pl.col("supervision") == "single_shot")["n_draws"]) == {DRAWS}
    assert ((sweep["U"] - (sweep["Q"] - sweep["lam"] * sweep["C"])).abs() < 1e-12).all()
    assert ((p["C"] >= 0) & (p["C"] <= 1) & (p["Q"] >= 0) & (p["Q"] <= 1)).all()

    # The λ = exp.lam points are the main experiment's numbers, from routes.parquet.
    ev = exp.evaluation.model_copy(update={"n_boot": 20})
    main = run_experiment(exp.model_copy(update={"evaluation": ev}), "main")["main"]
    for supervision in ("single_shot", "dars"):
        for view in ("test_rewrite", "test_decode"):
            m = _point(main, family="knn", supervision=supervision, view=view)
            q = _point(p, family="knn", supervision=supervision, view=view, lam=exp.lam)
            assert q["U"] == pytest.approx(m["U"]) and q["Q"] == pytest.approx(m["Q"])
            assert q["C"] == pytest.approx(m["C"])
            best = _point(main, supervision="best_fixed", view=view)
            fx = _point(p, supervision="fixed", view=view, model=best["best_model"])
            assert (fx["Q"], fx["C"]) == (pytest.approx(best["Q"]), pytest.approx(best["C"]))

    b = read_result(root, "pareto_budget")
    assert b.height == 2 * 3 * 3  # views × (knn ss, knn dars, fixed) × budgets
    assert read_context(root, "pareto")["lam"] == exp.lam
    # The terminal view: per budget, the best Q of any single-shot / DARS router and fixed model.
    [view] = SPEC.view({"pareto": p, "pareto_budget": b})
    assert view.title == f"pareto — {DATASET}: best quality Q with mean cost ≤ C"
    assert view.frame.columns[:4] == ["C ≤", "rew\n1-shot", "rew\nDARS", "rew\nfixed"]
    assert view.frame["C ≤"].to_list() == [0.1, 0.5, 1.0]
    fixed_dec = b.filter(supervision="fixed", view="test_decode").sort("budget")["Q"].to_list()
    assert view.frame["dec\nfixed"].to_list() == fixed_dec


def test_pareto_names_missing_or_stale_files(store, tmp_path):
    import shutil

    exp, root = store
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    moved = exp.model_copy(update={"root": str(copy)})
    layout = RunLayout(copy)
    lam_file = layout.lam_routes_file(DATASET, "knn", "dars")
    with pytest.raises(
        ValueError, match=r"holds routes at lam .* rerun `dars train.*lam_routes\.parquet"
    ):
        run_experiment(
            moved.model_copy(
                update={"evaluation": exp.evaluation.model_copy(update={"lam_grid": [0.0, 1.0]})}
            ),
            "pareto",
        )
    lam_file.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"λ-sweep routes .* are missing.*rerun `dars train.*lam_routes\.parquet",
    ):
        run_experiment(moved, "pareto")
    layout.routes_file(DATASET, "knn", "dars").unlink()
    with pytest.raises(FileNotFoundError, match="training has not run.*routes\\.parquet"):
        run_experiment(moved, "pareto")
    with pytest.raises(FileNotFoundError, match="no complete mirt/single_shot"):
        run_experiment(_families(moved, ["mirt"]), "pareto")
    with pytest.raises(ValueError, match="unknown router famil"):
        run_experiment(_families(moved, ["nope"]), "pareto")


def _families(exp, families):
    return exp.model_copy(
        update={"evaluation": exp.evaluation.model_copy(update={"sweep_families": families})}
    )
