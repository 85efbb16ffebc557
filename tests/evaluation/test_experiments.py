"""Ablation, diagnostics and validity experiments (dars.evaluation.experiments).

The hand example of the I/O tests: dataset ``demo_mc``, test queries q1, q2, pool models a
(costs $0) and b ($10), so c_a = 0, c_b = 1 and u_b = q_b - 0.05 (λ = 0.05):

test_rewrite (rewrites 0, 1)         test_decode (original, decodes 0, 1)
      a scores  q_a  b scores  q_b         a scores  q_a  b scores  q_b
q1    1, 1      1.0  0, 0      0.0   q1    1, 0      0.5  1, 1      1.0
q2    0, 0      0.0  1, 1      1.0   q2    0, 0      0.0  1, 0      0.5

Routes (q1, q2) → U_rew, U_dec:  (a, b) → 0.975, 0.475;  (a, a) → 0.5, 0.25;
(b, b) → 0.45, 0.7.
"""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from dars.benchmarks.loading import load_splits
from dars.config import BenchmarkSpec, Experiment, ModelSpec, Pool
from dars.evaluation.experiments import (
    ABLATION_VARIANTS,
    ablation_table,
    evaluate_ablation,
    evaluate_diagnostics,
    evaluate_validity,
    single_shot_distribution,
    stack_supervision,
)
from dars.evaluation.metrics import view_utilities
from dars.evaluation.results import read_result, result_exists
from dars.storage import RunLayout, write_observations, write_rewrites
from dars.storage.supervision_store import remove_supervision, write_supervision
from tests.simstore import T0, observation_rows

DS = "demo_mc"
SCORES = {
    "test_rewrite": {
        ("q1", "a"): [1, 1],
        ("q1", "b"): [0, 0],
        ("q2", "a"): [0, 0],
        ("q2", "b"): [1, 1],
    },
    "test_decode": {
        ("q1", "a"): [1, 0],
        ("q1", "b"): [1, 1],
        ("q2", "a"): [0, 0],
        ("q2", "b"): [1, 0],
    },
}
COST = {"a": 0.0, "b": 10.0}
# Route (q1 model, q2 model) → (U_rew, U_dec), from the module docstring.
U = {("a", "b"): (0.975, 0.475), ("a", "a"): (0.5, 0.25), ("b", "b"): (0.45, 0.7)}


def _exp(root, datasets=(DS,)) -> Experiment:
    return Experiment(
        name="t",
        root=str(root),
        benchmarks=[
            BenchmarkSpec(name=d, n_train=4, n_test=4, options={"n_items": 8}) for d in datasets
        ],
        pool=Pool(
            models=[
                ModelSpec(name="a", litellm_model="dars-sim/cheap-weak"),
                ModelSpec(name="b", litellm_model="dars-sim/strong-cheap"),
            ]
        ),
        rewriter=ModelSpec(name="rw", litellm_model="dars-sim/rewriter"),
    )


def _test_frame(dataset: str = DS) -> pl.DataFrame:
    rows = []
    for view, cells in SCORES.items():
        for (qid, model), scores in cells.items():
            for j, s in enumerate(scores):
                rows.append(
                    {
                        "dataset": dataset,
                        "query_id": qid,
                        "model": model,
                        "view": view,
                        "rewrite_id": j if view == "test_rewrite" else -1,
                        "decode_id": 0 if view == "test_rewrite" else j,
                        "score": float(s),
                        "cost_usd": COST[model],
                    }
                )
    return pl.DataFrame(rows)


def _write_test_store(root, dataset: str = DS) -> None:
    frame = _test_frame(dataset)
    rows = pl.concat(
        observation_rows(frame.filter(view=v).drop("view"), split="test", view=v) for v in SCORES
    )
    write_observations(root, rows, shard=0)


def _routes(draws: list[tuple[str, str]]) -> pl.DataFrame:
    rows = [
        {"draw": s, "query_id": q, "model": m, "model_index": "ab".index(m)}
        for s, picks in enumerate(draws)
        for q, m in zip(("q1", "q2"), picks, strict=True)
    ]
    return pl.DataFrame(rows, schema_overrides={"draw": pl.Int32, "model_index": pl.Int32})


def _write_routes(root, family: str, mode: str, draws, dataset: str = DS) -> None:
    path = RunLayout(root).routes_file(dataset, family, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    _routes(draws).write_parquet(path)


# Which routes each trained mode gets in the I/O ablation example.
TRAINED = {
    "single_shot": [("a", "b"), ("a", "a")],
    "dars": [("a", "b")],
    "input_only": [("a", "a")],
    "output_only": [("b", "b")],
    "without_risk": [("a", "a")],
    "rewrite_risk": [("b", "b")],
    "decoding_risk": [("a", "b")],
}


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "run"
    _write_test_store(root)
    for mode, draws in TRAINED.items():
        _write_routes(root, "mirt", mode, draws)
    return _exp(root), root


# ------------------------------------------------------------------------------------------------
# ablation
# ------------------------------------------------------------------------------------------------
def _ablation_rows(values: dict[tuple[str, str], tuple[float, float]]) -> pl.DataFrame:
    rows = [
        {"dataset": ds, "view": view, "family": "mirt", "variant": variant, "U": u}
        for (ds, variant), pair in values.items()
        for view, u in zip(("test_rewrite", "test_decode"), pair, strict=True)
    ]
    return pl.DataFrame(rows)


def test_ablation_table_layout_and_hand_average():
    # Variants given out of order and datasets unsorted: the table fixes both orders.
    frame = _ablation_rows(
        {
            ("zeta", "full_dars"): (0.4, 0.6),
            ("alpha", "full_dars"): (0.2, 0.2),
            ("zeta", "single_shot"): (0.1, 0.3),
            ("alpha", "single_shot"): (0.5, 0.7),
        }
    )
    table = ablation_table(frame)
    assert table.columns == ["variant", "alpha_rew", "alpha_dec", "zeta_rew", "zeta_dec", "average"]
    assert table["variant"].to_list() == ["single_shot", "full_dars"]
    assert table.row(0) == pytest.approx(("single_shot", 0.5, 0.7, 0.1, 0.3, 0.4))
    assert table.row(1) == pytest.approx(("full_dars", 0.2, 0.2, 0.4, 0.6, 0.35))


def test_ablation_table_average_is_null_when_a_cell_is_missing():
    frame = _ablation_rows({("d", "input_only"): (0.2, 0.4), ("e", "input_only"): (0.6, 0.8)})
    frame = frame.filter(~((pl.col("dataset") == "e") & (pl.col("view") == "test_decode")))
    table = ablation_table(frame)
    assert table["e_dec"].to_list() == [None]
    assert table["average"].to_list() == [None]


def test_ablation_table_rejects_bad_frames():
    frame = _ablation_rows({("d", "input_only"): (0.2, 0.4)})
    with pytest.raises(ValueError, match="several families"):
        ablation_table(pl.concat([frame, frame.with_columns(family=pl.lit("knn"))]))
    with pytest.raises(ValueError, match="unknown variant.*'dars'"):
        ablation_table(frame.with_columns(variant=pl.lit("dars")))
    with pytest.raises(ValueError, match="several rows for dataset='d'"):
        ablation_table(pl.concat([frame, frame]))


def test_evaluate_ablation_hand_example(run):
    exp, root = run
    out = evaluate_ablation(exp, root, n_boot=50)
    assert out.columns == [
        "dataset", "view", "family", "variant", "n_draws", "U", "U_std", "U_low", "U_high", "Q", "C"
    ]  # fmt: skip
    assert out["variant"].to_list() == [v for v in ABLATION_VARIANTS for _ in range(2)]
    assert out["view"].to_list() == ["test_rewrite", "test_decode"] * len(ABLATION_VARIANTS)
    assert set(out["family"]) == {"mirt"}
    got = {(r["variant"], r["view"]): r for r in out.iter_rows(named=True)}
    # full_dars is not trained here: its row comes from the dars routes.
    expect_routes = {v: TRAINED.get(v, TRAINED["dars"])[0] for v in ABLATION_VARIANTS}
    for variant in ABLATION_VARIANTS[1:]:
        u_rew, u_dec = U[expect_routes[variant]]
        assert got[(variant, "test_rewrite")]["U"] == pytest.approx(u_rew)
        assert got[(variant, "test_decode")]["U"] == pytest.approx(u_dec)
        for view in ("test_rewrite", "test_decode"):
            r = got[(variant, view)]
            assert r["n_draws"] == 1 and r["U_std"] is None
            assert r["U_low"] <= r["U"] <= r["U_high"]
    # single shot: draws (a, b) and (a, a) → mean and sample std over the two draws.
    ss = got[("single_shot", "test_rewrite")]
    assert ss["n_draws"] == 2 and ss["U_low"] is None
    assert ss["U"] == pytest.approx((0.975 + 0.5) / 2)
    assert ss["U_std"] == pytest.approx(abs(0.975 - 0.5) / math.sqrt(2))
    assert got[("single_shot", "test_decode")]["U"] == pytest.approx((0.475 + 0.25) / 2)

    stored = read_result(root, "ablation")
    assert stored.equals(out)
    payload = json.loads(RunLayout(root).results_file("ablation", "json").read_text())
    assert payload["family"] == "mirt" and payload["n_boot"] == 50
    assert payload["trained_modes"][f"{DS}/full_dars"] == "dars"

    table = ablation_table(out)
    assert table.filter(variant="output_only").row(0) == pytest.approx(
        ("output_only", 0.45, 0.7, (0.45 + 0.7) / 2)
    )


def test_evaluate_ablation_uses_full_dars_routes_when_trained(run):
    exp, root = run
    _write_routes(root, "mirt", "full_dars", [("b", "b")])
    out = evaluate_ablation(exp, root, n_boot=20).filter(variant="full_dars")
    assert out["U"].to_list() == pytest.approx(list(U[("b", "b")]))


def test_evaluate_ablation_names_missing_routes_and_command(run):
    exp, root = run
    layout = RunLayout(root)
    layout.routes_file(DS, "mirt", "output_only").unlink()
    layout.routes_file(DS, "mirt", "dars").unlink()
    with pytest.raises(FileNotFoundError) as err:
        evaluate_ablation(exp, root)
    msg = str(err.value)
    assert str(layout.model_dir(DS, "mirt", "output_only")) in msg
    assert str(layout.model_dir(DS, "mirt", "dars")) in msg
    assert "dars train" in msg and "--family mirt --mode output_only --mode dars" in msg
    assert not result_exists(root, "ablation")
    with pytest.raises(ValueError, match="unknown router famil"):
        evaluate_ablation(exp, root, family="nope")


# ------------------------------------------------------------------------------------------------
# diagnostics
# ------------------------------------------------------------------------------------------------
def test_single_shot_distribution_one_row_per_draw():
    vu = view_utilities(_test_frame().with_columns(status=pl.lit("ok")))
    out = single_shot_distribution(
        {DS: vu},
        {(DS, "mirt"): _routes([("a", "b"), ("a", "a")]), (DS, "knn"): _routes([("b", "b")])},
    )
    assert out.columns == ["dataset", "view", "family", "draw", "U", "Q", "C"]
    assert out.height == 2 * (2 + 1)
    mirt = out.filter(family="mirt", view="test_rewrite").sort("draw")
    assert mirt["U"].to_list() == pytest.approx([0.975, 0.5])
    assert mirt["Q"].to_list() == pytest.approx([1.0, 0.5])
    assert mirt["C"].to_list() == pytest.approx([0.5, 0.0])
    knn = out.filter(family="knn", view="test_decode")
    assert knn["U"].to_list() == pytest.approx([0.7])
    with pytest.raises(ValueError, match="no view utilities"):
        single_shot_distribution({}, {(DS, "mirt"): _routes([("a", "b")])})


def test_stack_supervision_checks_columns():
    frame = pl.DataFrame({"dataset": ["d"], "metric": ["m"]})
    with pytest.raises(ValueError, match="diagnostics table of dataset 'd' lacks.*value"):
        stack_supervision([frame], {"dataset": pl.String, "value": pl.Float64}, "diagnostics")
    empty = stack_supervision([], {"dataset": pl.String}, "x")
    assert empty.height == 0 and empty.schema == pl.Schema({"dataset": pl.String})


def _diagnostics(dataset: str, value: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "dataset": [dataset, dataset],
            "metric": ["outcome_instability", "winner_flip_rate"],
            "value": [value, value / 2],
            "ci_low": [value - 0.1, 0.0],
            "ci_high": [value + 0.1, 1.0],
            "n_queries": [2, 2],
            "n_units": [4, 2],
        }
    )


def _recovery(dataset: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "dataset": [dataset],
            "supervision": ["single_shot"],
            "k": pl.Series([None], dtype=pl.Int32),
            "m": pl.Series([None], dtype=pl.Int32),
            "recovery": [0.5],
            "ci_low": [0.25],
            "ci_high": [0.75],
            "regret": [0.1],
            "n_queries": [2],
            "n_labels": [200],
        }
    )


def test_evaluate_diagnostics_writes_results_and_drops_stale_recovery(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root, datasets=(DS, "demo_span"))
    for ds, value in ((DS, 0.7), ("demo_span", 0.3)):
        _write_test_store(root, ds)
        write_supervision(root, ds, "diagnostics", _diagnostics(ds, value))
        _write_routes(root, "mirt", "single_shot", [("a", "b"), ("a", "a")], dataset=ds)
    _write_routes(root, "knn", "single_shot", [("b", "b")], dataset="demo_span")
    write_supervision(root, DS, "recovery", _recovery(DS))

    diag = evaluate_diagnostics(exp, root)
    assert diag["dataset"].to_list() == [DS, DS, "demo_span", "demo_span"]
    assert diag["value"].to_list() == pytest.approx([0.7, 0.35, 0.3, 0.15])
    assert read_result(root, "diagnostics").equals(diag)
    dist = read_result(root, "single_shot_distribution")
    assert dist.group_by("dataset", "family").len().sort("dataset", "family").rows() == [
        ("demo_mc", "mirt", 4),
        ("demo_span", "knn", 2),
        ("demo_span", "mirt", 4),
    ]
    rec = read_result(root, "recovery")
    assert rec["dataset"].to_list() == [DS] and rec["recovery"].to_list() == [0.5]

    # A later run without label recovery (e.g. a real pool) must not leave the old table.
    remove_supervision(root, DS, "recovery")
    evaluate_diagnostics(exp, root)
    layout = RunLayout(root)
    assert not layout.results_file("recovery", "parquet").exists()
    assert not layout.results_file("recovery", "json").exists()
    assert result_exists(root, "diagnostics")


def test_evaluate_diagnostics_names_missing_inputs(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root)
    _write_test_store(root)
    with pytest.raises(FileNotFoundError, match="'diagnostics'.*dars supervise"):
        evaluate_diagnostics(exp, root)
    write_supervision(root, DS, "diagnostics", _diagnostics(DS, 0.5))
    _write_routes(root, "mirt", "dars", [("a", "b")])
    with pytest.raises(
        FileNotFoundError, match="single-shot routes.*'demo_mc'.*--mode single_shot"
    ):
        evaluate_diagnostics(exp, root)


# ------------------------------------------------------------------------------------------------
# validity
# ------------------------------------------------------------------------------------------------
def _validity_store(root, exp: Experiment, *, with_rewrites: bool = True) -> list[str]:
    """Two train items × two models × (original, rewrite 0): model a answers right, b wrong;
    one stored score of b is deliberately wrong (1.0) so that rescoring disagrees once."""
    items = load_splits(exp)[DS]["train"][:2]
    wrong = {it.query_id: "ABCD"[("ABCD".index(it.gold) + 1) % 4] for it in items}
    rows = []
    for it in items:
        for model in ("a", "b"):
            letter = it.gold if model == "a" else wrong[it.query_id]
            for rid in (-1, 0):
                rows.append(
                    {
                        "dataset": DS,
                        "query_id": it.query_id,
                        "model": model,
                        "rewrite_id": rid,
                        "decode_id": 0,
                        "score": 1.0 if model == "a" else 0.0,
                        "cost_usd": 0.0,
                        "response": f"Reasoning.\nFinal Answer: {letter}",
                    }
                )
    frame = pl.DataFrame(rows)
    bad = pl.int_range(pl.len()) == 7  # item 2, model b, rewrite 0
    frame = frame.with_columns(pl.when(bad).then(1.0).otherwise(pl.col("score")).alias("score"))
    obs = observation_rows(frame.drop("response")).with_columns(
        frame["response"].alias("response"), pl.lit(None, pl.String).alias("parsed")
    )
    write_observations(root, obs, shard=0)
    if with_rewrites:
        write_rewrites(
            root,
            [
                {
                    "dataset": DS,
                    "split": "train",
                    "query_id": it.query_id,
                    "rewrite_id": 0,
                    "text": f"Rephrased: {it.question}",
                    "rewriter": "rw",
                    "complete": True,
                    "dup_original": False,
                    "dup_rewrite": False,
                    "struct_ok": True,
                    "similarity": sim,
                    "numbers_ok": i == 0,
                    "review_flag": i != 0,
                    "created_at": T0,
                }
                for i, (it, sim) in enumerate(zip(items, (0.9, 0.7), strict=True))
            ],
            shard=0,
        )
    return [it.query_id for it in items]


def test_evaluate_validity_hand_example(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root)
    _validity_store(root, exp)
    out = evaluate_validity(exp, root)
    rew = out["rewrite_validity"]
    # records, rewrites, complete, orig_dup, rew_dup, sim mean / p05, numbers, struct, review
    assert rew.rows() == [
        (DS, "train", 2, 2, 1.0, 0.0, 0.0, pytest.approx(0.8), pytest.approx(0.71), 0.5, 1.0, 0.5)
    ]
    sc = out["scoring_validity"].row(0, named=True)
    assert (sc["dataset"], sc["split"], sc["rows"], sc["ok_rows"]) == (DS, "train", 8, 8)
    assert sc["rescored"] == 8 and sc["rescore_diffs"] == 1
    assert sc["rescore_agreement"] == pytest.approx(7 / 8)
    assert sc["duplicate_keys"] == 0 and sc["score_type"] == 1.0
    for name, frame in out.items():
        assert read_result(root, name).equals(frame)


def test_evaluate_validity_names_missing_stores(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root)
    with pytest.raises(FileNotFoundError, match=r"no observations .*\['demo_mc'\].*dars collect"):
        evaluate_validity(exp, root)
    _validity_store(root, exp, with_rewrites=False)
    with pytest.raises(FileNotFoundError, match="answer rewrites, but no rewrites.*dars collect"):
        evaluate_validity(exp, root)
