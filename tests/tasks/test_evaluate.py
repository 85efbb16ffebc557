"""The evaluate stage (dars.tasks.evaluate): stored inputs → an experiment's compute → results.

The hand example (tests/evaluation/hand_example.py) is written to a run directory: the tests check
what the task reads (the input vocabulary), what it writes (tables, JSON twins with the run
context and the compute's extras), what it removes (a declared table no longer produced), and
that errors about missing inputs name their files and the command that writes them.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from dars.benchmarks.loading import load_splits
from dars.config import Evaluation, Experiment
from dars.evaluation.experiments.base import (
    LAM_ROUTES,
    OBSERVATIONS,
    ROUTES,
    VIEW_UTILITIES,
    ExperimentSpec,
    View,
    check_experiments,
    supervision,
)
from dars.storage import RunLayout, write_observations, write_rewrites
from dars.storage.results import read_result, result_exists
from dars.storage.supervision_store import remove_supervision, write_supervision
from dars.tasks.evaluate import input_paths, read_inputs, run_experiment
from dars.tasks.report import write_report
from tests.evaluation.hand_example import (
    DS,
    SCORES,
    TRAINED,
    U,
    diagnostics_rows,
    experiment,
    observation_frame,
    recovery_rows,
    routes,
)
from tests.evaluation.toy import registered, toy_spec
from tests.simstore import T0, observation_rows


def _exp(root, datasets=(DS,), **evaluation) -> Experiment:
    return experiment(root, datasets).model_copy(
        update={"evaluation": Evaluation(n_boot=50, **evaluation)}
    )


def _write_test_store(root, dataset: str = DS) -> None:
    frame = observation_frame(dataset)
    rows = pl.concat(
        observation_rows(frame.filter(view=v).drop("view"), split="test", view=v) for v in SCORES
    )
    write_observations(root, rows, shard=0)


def _write_routes(root, family: str, supervision: str, draws, dataset: str = DS) -> None:
    path = RunLayout(root).routes_file(dataset, family, supervision)
    path.parent.mkdir(parents=True, exist_ok=True)
    routes(draws).write_parquet(path)


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "run"
    _write_test_store(root)
    for sup, draws in TRAINED.items():
        _write_routes(root, "mirt", sup, draws)
    return _exp(root), root


# ------------------------------------------------------------------------------------------------
# reading inputs
# ------------------------------------------------------------------------------------------------
def test_read_inputs_reads_each_kind_from_the_store(run):
    exp, root = run
    layout = RunLayout(root)
    # An interrupted training (no routes.parquet) is not an input.
    layout.model_dir(DS, "knn", "dars").mkdir(parents=True)
    lam = routes([("a", "b")]).with_columns(lam=pl.lit(0.05))
    lam.write_parquet(layout.lam_routes_file(DS, "mirt", "dars"))
    write_supervision(root, DS, "diagnostics", pl.DataFrame({"dataset": [DS], "value": [1.0]}))
    optional = supervision("recovery", optional=True)
    got = read_inputs(exp, [VIEW_UTILITIES, ROUTES, LAM_ROUTES, OBSERVATIONS, optional])

    vu = got[VIEW_UTILITIES][DS]
    assert vu.height == 2 * 2 * 2  # views × queries × models
    assert vu.filter(view="test_rewrite", query_id="q1", model="b")["u"].item() == -0.05
    assert list(got[ROUTES]) == sorted((DS, "mirt", m) for m in TRAINED)
    assert got[ROUTES][(DS, "mirt", "dars")].equals(routes(TRAINED["dars"]))
    assert got[LAM_ROUTES] == {
        (DS, "mirt", "dars"): got[LAM_ROUTES][(DS, "mirt", "dars")],
        (DS, "mirt", "single_shot"): None,  # trained before λ-sweep routes were written
    }
    assert got[OBSERVATIONS].height == 16 and "response" in got[OBSERVATIONS].columns
    assert got[optional] == {}  # no dataset has it
    with pytest.raises(FileNotFoundError, match=r"'subgrid'.*dars supervise"):
        read_inputs(exp, [supervision("subgrid")])


def test_input_paths_name_the_files_of_the_store(tmp_path):
    exp = _exp(tmp_path)
    layout = RunLayout(tmp_path)
    where = [
        (ROUTES, (DS, "mirt", "dars")),
        (ROUTES, (DS, "mirt", "dars")),
        (ROUTES, None),
        (LAM_ROUTES, (DS, "knn", "dars")),
        (supervision("dars"), DS),
        (OBSERVATIONS, None),
    ]
    assert input_paths(exp, where) == [
        layout.routes_file(DS, "mirt", "dars"),
        layout.models_dir(),
        layout.lam_routes_file(DS, "knn", "dars"),
        layout.supervision_file(DS, "dars"),
        layout.observations_dir(),
    ]


# ------------------------------------------------------------------------------------------------
# ablation
# ------------------------------------------------------------------------------------------------
def test_ablation_writes_its_table_with_context_and_extras(run):
    exp, root = run
    out = run_experiment(exp, "ablation")
    assert list(out) == ["ablation"]
    table = out["ablation"]
    assert read_result(root, "ablation").equals(table)
    got = table.filter(supervision="output_only")["U"].to_list()  # rewrite view, then decode
    assert got == pytest.approx(list(U[("b", "b")]))
    payload = json.loads(RunLayout(root).results_file("ablation", "json").read_text())
    assert payload["family"] == "mirt" and payload["n_boot"] == 50
    assert payload["trained_supervisions"][f"{DS}/full_dars"] == "dars"
    assert payload["context"]["experiment"] == "t" and payload["context"]["lam"] == exp.lam
    assert len(payload["rows"]) == table.height


def test_ablation_uses_full_dars_routes_when_trained(run):
    exp, root = run
    _write_routes(root, "mirt", "full_dars", [("b", "b")])
    out = run_experiment(exp, "ablation")["ablation"].filter(supervision="full_dars")
    assert out["U"].to_list() == pytest.approx(list(U[("b", "b")]))


def test_ablation_names_missing_routes_files_and_command(run):
    exp, root = run
    layout = RunLayout(root)
    layout.routes_file(DS, "mirt", "output_only").unlink()
    layout.routes_file(DS, "mirt", "dars").unlink()
    with pytest.raises(FileNotFoundError) as err:
        run_experiment(exp, "ablation")
    msg = str(err.value)
    assert str(layout.routes_file(DS, "mirt", "output_only")) in msg
    assert str(layout.routes_file(DS, "mirt", "dars")) in msg
    assert (
        "dars train" in msg and "--family mirt --supervision output_only --supervision dars" in msg
    )
    assert not result_exists(root, "ablation")
    with pytest.raises(ValueError, match="unknown router famil"):
        run_experiment(_exp(root, ablation_family="nope"), "ablation")


# ------------------------------------------------------------------------------------------------
# diagnostics
# ------------------------------------------------------------------------------------------------
def test_diagnostics_writes_results_and_drops_stale_recovery(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root, datasets=(DS, "demo_span"))
    for ds, value in ((DS, 0.7), ("demo_span", 0.3)):
        _write_test_store(root, ds)
        write_supervision(root, ds, "diagnostics", diagnostics_rows(ds, value))
        _write_routes(root, "mirt", "single_shot", [("a", "b"), ("a", "a")], dataset=ds)
    _write_routes(root, "knn", "single_shot", [("b", "b")], dataset="demo_span")
    write_supervision(root, DS, "recovery", recovery_rows(DS))

    diag = run_experiment(exp, "diagnostics")["diagnostics"]
    assert diag["dataset"].to_list() == [DS] * 3 + ["demo_span"] * 3
    assert diag["value"].to_list() == pytest.approx([0.7, 0.35, 0.45, 0.3, 0.15, 0.25])
    assert diag["definition"].to_list() == [None, "paper", "draws"] * 2
    assert read_result(root, "diagnostics").equals(diag)
    dist = read_result(root, "single_shot_distribution")
    assert dist.group_by("dataset", "family").len().sort("dataset", "family").rows() == [
        ("demo_mc", "mirt", 4),
        ("demo_span", "knn", 2),
        ("demo_span", "mirt", 4),
    ]
    rec = read_result(root, "recovery")
    assert rec["dataset"].to_list() == [DS] and rec["recovery"].to_list() == [0.5]
    payload = json.loads(RunLayout(root).results_file("recovery", "json").read_text())
    assert payload["datasets"] == [DS]

    # A later run without label recovery (e.g. a real pool) must not leave the old table.
    remove_supervision(root, DS, "recovery")
    out = run_experiment(exp, "diagnostics")
    assert list(out) == ["diagnostics", "single_shot_distribution"]
    layout = RunLayout(root)
    assert not layout.results_file("recovery", "parquet").exists()
    assert not layout.results_file("recovery", "json").exists()
    assert result_exists(root, "diagnostics")


def test_diagnostics_names_missing_inputs(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root)
    _write_test_store(root)
    with pytest.raises(FileNotFoundError, match="'diagnostics'.*dars supervise"):
        run_experiment(exp, "diagnostics")
    write_supervision(root, DS, "diagnostics", diagnostics_rows(DS, 0.5))
    _write_routes(root, "mirt", "dars", [("a", "b")])
    with pytest.raises(
        FileNotFoundError, match="single-shot routes.*'demo_mc'.*--supervision single_shot.*models"
    ):
        run_experiment(exp, "diagnostics")


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


def test_validity_hand_example(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root)
    _validity_store(root, exp)
    out = run_experiment(exp, "validity")
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


def test_validity_names_missing_stores(tmp_path):
    root = tmp_path / "run"
    exp = _exp(root)
    with pytest.raises(
        FileNotFoundError, match=r"no observations .*\['demo_mc'\].*dars collect.*observations"
    ):
        run_experiment(exp, "validity")
    _validity_store(root, exp, with_rewrites=False)
    with pytest.raises(
        FileNotFoundError, match="answer rewrites, but no rewrites.*dars collect.*rewrites"
    ):
        run_experiment(exp, "validity")


# ------------------------------------------------------------------------------------------------
# the contract between a spec and the task
# ------------------------------------------------------------------------------------------------
def _spec(name: str, compute, tables) -> ExperimentSpec:
    return ExperimentSpec(
        name=name,
        help="A test experiment.",
        title="Test",
        order=1000,
        inputs=(OBSERVATIONS,),
        compute=compute,
        tables=tables,
        section=lambda doc, run: None,
        view=lambda tables: [View(t, f) for t, f in tables.items()],
    )


def test_frames_must_match_the_declared_schema_and_nothing_is_half_written(run):
    exp, root = run
    counts = {"n": pl.Int64}
    bad = _spec(
        "bad_schema",
        lambda inputs, exp: {
            "bad_first": pl.DataFrame({"n": [1]}),
            "bad_second": pl.DataFrame({"n": [1.5]}),
        },
        {"bad_first": counts, "bad_second": counts},
    )
    undeclared = _spec(
        "undeclared", lambda i, e: {"other": pl.DataFrame({"n": [1]})}, {"x": counts}
    )
    with registered(bad, undeclared):
        with pytest.raises(ValueError, match=r"'bad_schema' produced table 'bad_second'.*Float64"):
            run_experiment(exp, "bad_schema")
        assert not result_exists(root, "bad_first")  # checked before anything is written
        with pytest.raises(ValueError, match=r"table\(s\) \['other'\] its spec does not declare"):
            run_experiment(exp, "undeclared")


def test_a_toy_experiment_runs_through_the_task_and_lands_in_the_report(run):
    """A new experiment is one module: registered at test time, it is read, computed, written
    and reported with no change anywhere else."""
    exp, root = run
    with registered(toy_spec()):
        assert "toy" in check_experiments(None)
        out = run_experiment(exp, "toy")
        counts = read_result(root, "toy_counts")
        assert counts.equals(out["toy_counts"])
        assert counts.rows() == [(DS, "a", 8, 0.375), (DS, "b", 8, 0.625)]
        run_experiment(exp, "main")  # the report needs it
        md = write_report(exp).read_text(encoding="utf-8")
    assert "\n## 9. Toy counts\n" in md
    assert "| a | 8 | 0.375 |" in md and "](toy_counts.png)" in md
    assert RunLayout(root).report_file("toy_counts", "png").is_file()
    assert "toy" not in check_experiments(None)


def test_registry_lists_experiments_in_report_order_and_rejects_unknown_names():
    assert check_experiments(None) == [
        "main", "ablation", "diagnostics", "sample_efficiency", "pareto", "beta", "validity"
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown experiment\(s\) \['nope'\]; available: .*beta"):
        check_experiments(["nope"])
    with pytest.raises(ValueError, match="unknown experiment 'nope'; available"):
        run_experiment(_exp("unused"), "nope")
