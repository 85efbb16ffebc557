"""The supervise stage on small stores: exact paths, shapes, ok-only train input, reruns, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from rich.console import Console

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dars.cli import _summary_table  # noqa: E402
from dars.config import (  # noqa: E402
    BenchmarkSpec,
    Diagnostics,
    Experiment,
    ModelSpec,
    Pool,
    Protocol,
)
from dars.sim import simulated_truth  # noqa: E402
from dars.storage import RunLayout, write_observations  # noqa: E402
from dars.storage.supervision_store import (  # noqa: E402
    list_supervision,
    read_supervision,
    supervision_exists,
    write_supervision,
)
from dars.storage.truth import read_truth  # noqa: E402
from dars.supervision import (  # noqa: E402
    ABLATIONS,
    DEFINITIONS,
    DIAGNOSTICS_SCHEMA,
    diagnostics,
    full_dars,
    hard_labels,
    single_shot,
    synthetic_observations,
)
from dars.supervision.core import cost_bounds  # noqa: E402
from dars.supervision.recovery import truth_on_cost_scale  # noqa: E402
from dars.supervision.tables import TABLES, subgrid_protocols  # noqa: E402
from dars.tasks.collect import store_truth  # noqa: E402
from dars.tasks.supervise import supervise, supervise_dataset  # noqa: E402
from tests.simstore import observation_rows, sim_experiment, simulate_train  # noqa: E402
from tests.supervision.reference import (  # noqa: E402
    paper_example,
    ref_draws_diagnostics,
    ref_paper_diagnostics,
)

DS = "demo_mc"
N_TRAIN, K, M, S = 12, 3, 3, 20
N_MODELS = 6
N_BOOT = 200


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    """A simulated store holding more than the stage may use: 5% error rows, an extra decode
    outside the protocol grid and test-split rows. Returns (experiment, root, result, used)
    where ``used`` is what the stage must supervise on (ok, train, inside the grid)."""
    root = tmp_path_factory.mktemp("sim") / "run"
    exp = sim_experiment(
        root, n_train=N_TRAIN, n_items=24, train_rewrites=K, train_decodes=M, draws=S
    )
    grid = simulate_train(exp)
    rng = np.random.default_rng(0)
    grid = grid.with_columns(
        status=pl.Series(np.where(rng.random(grid.height) < 0.05, "error", "ok"))
    )
    extra = grid.filter(pl.col("decode_id") == 0).with_columns(
        pl.lit(M, pl.Int64).alias("decode_id"), pl.lit("ok").alias("status")
    )
    test = extra.filter(pl.col("rewrite_id") == 0).with_columns(
        pl.lit(-1, pl.Int64).alias("rewrite_id"), pl.lit(0, pl.Int64).alias("decode_id")
    )
    write_observations(root, observation_rows(pl.concat([grid, extra])), shard=0)
    write_observations(root, observation_rows(test, split="test", view="test_decode"), shard=0)
    store_truth(exp, DS)
    result = supervise_dataset(exp, DS, n_boot=N_BOOT)
    used = observation_rows(grid).filter(pl.col("status") == "ok")
    return exp, root, result, used


def test_every_table_is_written_at_its_layout_path(sim_run):
    exp, root, result, _ = sim_run
    layout = RunLayout(root)
    assert list(result.files) == list(TABLES)
    for name, path in result.files.items():
        assert path == layout.supervision_file(DS, name)
        assert path == root / "supervision" / f"dataset={DS}" / f"{name}.parquet"
        assert path.is_file()
    assert list_supervision(root, DS) == sorted(TABLES)


def test_dars_is_full_dars_of_the_ok_train_grid_only(sim_run):
    exp, root, _, used = sim_run
    got = read_supervision(root, DS, "dars")
    assert_frame_equal(got, full_dars(used, lam=exp.lam, beta=exp.beta))
    assert got.height == N_TRAIN * N_MODELS
    assert got["n_obs"].sum() == used.height  # error rows, the extra decode and test rows excluded
    assert got["n_obs"].max() == K * M


def test_table_shapes(sim_run):
    exp, root, _, used = sim_run
    cells = N_TRAIN * N_MODELS
    ablations = read_supervision(root, DS, "ablations")
    assert ablations.height == len(ABLATIONS) * cells
    assert ablations["supervision"].unique(maintain_order=True).to_list() == list(ABLATIONS)
    assert_frame_equal(
        ablations.filter(pl.col("supervision") == "full_dars").drop("supervision"),
        read_supervision(root, DS, "dars"),
    )
    draws = read_supervision(root, DS, "single_shot_draws")
    shot_labels = read_supervision(root, DS, "single_shot_labels")
    assert draws.height == S * cells and shot_labels.height == S * N_TRAIN
    expected = single_shot(used, exp.pool.names, draws=S, seed=exp.seed, lam=exp.lam)
    assert_frame_equal(draws, expected.draws)
    assert_frame_equal(shot_labels, expected.labels)

    subgrid = read_supervision(root, DS, "subgrid")
    protocols = sorted(set(subgrid.select("k", "m").iter_rows()))
    assert protocols == [(1, 1), (1, 3), (2, 2), (3, 1), (3, 3)]
    # Shared slots that failed for a model leave its cell out; the full grid keeps every cell.
    assert len(protocols) * cells * 0.85 < subgrid.height <= len(protocols) * cells
    assert subgrid.filter((pl.col("k") == K) & (pl.col("m") == M)).height == cells
    sizes = subgrid.group_by("k", "m").agg(pl.col("n_obs").max()).sort("k", "m")
    assert (sizes["n_obs"] <= sizes["k"] * sizes["m"]).all()

    diag = read_supervision(root, DS, "diagnostics")
    assert diag.columns == list(DIAGNOSTICS_SCHEMA)
    assert diag.select("metric", "definition").rows() == [
        ("outcome_instability", None),
        ("winner_flip_rate", "paper"),
        ("winner_flip_rate", "draws"),
        ("single_vs_da_disagreement", "paper"),
        ("single_vs_da_disagreement", "draws"),
        ("input_variance", None),
        ("output_variance", None),
        ("input_share", None),
    ]
    assert diag["is_default"].to_list() == [True, True, False, True, False, True, True, True]
    assert (diag["ci_low"] <= diag["value"]).all() and (diag["value"] <= diag["ci_high"]).all()
    for definition in DEFINITIONS:
        expected = diagnostics(
            used,
            exp.pool.names,
            definition=definition,
            lam=exp.lam,
            beta=exp.beta,
            draws=S,
            seed=exp.seed,
            n_boot=N_BOOT,
        )
        got = diag.filter(pl.col("definition").is_null() | (pl.col("definition") == definition))
        assert_frame_equal(got.drop("definition", "is_default"), expected)

    recovery = read_supervision(root, DS, "recovery")
    assert recovery["supervision"].to_list() == [
        "single_shot",
        *ABLATIONS,
        *(f"dars_k{k}_m{m}" for k, m in protocols),
    ]
    assert recovery["recovery"].is_between(0, 1).all()


def test_labels_table_agrees_with_the_label_functions(sim_run):
    exp, root, _, _ = sim_run
    dars = read_supervision(root, DS, "dars")
    labels = read_supervision(root, DS, "labels")
    assert labels.height == N_TRAIN * N_MODELS
    per_query = labels.group_by("query_id").agg(
        pl.col("is_label").sum(), pl.col("prob").sum(), pl.col("rank").sort()
    )
    assert (per_query["is_label"] == 1).all()
    np.testing.assert_allclose(per_query["prob"].to_numpy(), 1.0)
    assert all(r.to_list() == list(range(1, N_MODELS + 1)) for r in per_query["rank"])
    winners = labels.filter("is_label").select("dataset", "query_id", label="model")
    assert_frame_equal(
        winners.sort("query_id"),
        hard_labels(dars, exp.pool.names).select("dataset", "query_id", "label"),
    )


def test_summary_rows_and_rich_table(sim_run):
    _, root, result, used = sim_run
    summary = result.summary
    assert_frame_equal(read_supervision(root, DS, "summary"), summary)
    values = dict(zip(summary["metric"], summary["value"], strict=True))
    assert values["n_queries"] == N_TRAIN
    assert values["n_models"] == N_MODELS
    assert values["n_observations"] == used.height
    assert values["n_queries_dropped"] == 0
    assert {f"recovery:{v}" for v in ("single_shot", *ABLATIONS)} <= set(values)
    console = Console(record=True, width=120)
    console.print(_summary_table(summary, definition="paper"))
    text = console.export_text()
    assert "winner_flip_rate" in text and "recovery:full_dars" in text and DS in text
    flat = " ".join(text.split())
    assert "paper definition" in flat and "the draws variant" in flat
    diag = read_supervision(root, DS, "diagnostics").filter("is_default")
    shown = summary.filter(pl.col("metric").is_in(diag["metric"].to_list()))
    assert_frame_equal(shown, diag.select(shown.columns))


def test_rerun_writes_identical_files(sim_run):
    exp, root, result, _ = sim_run
    before = {name: path.read_bytes() for name, path in result.files.items()}
    again = supervise_dataset(exp, DS, n_boot=N_BOOT)
    assert {name: path.read_bytes() for name, path in again.files.items()} == before


def test_stored_truth_lines_up_with_the_observations(sim_run):
    exp, root, _, used = sim_run
    dars = read_supervision(root, DS, "dars")
    stored = read_truth(root, DS)
    assert_frame_equal(stored, simulated_truth(exp, DS))  # what the decode flow stores
    assert stored.height == N_TRAIN * N_MODELS  # every train item × the pool
    truth = truth_on_cost_scale(stored, dars["query_id"].unique().to_list(), cost_bounds(used))
    assert truth.height == dars.height
    joined = dars.join(truth, on=["dataset", "query_id", "model"], how="inner")
    assert joined.height == dars.height  # truth uses the pool's names, not the sim ids
    assert np.corrcoef(joined["q_mean"], joined["p_true"])[0, 1] > 0.7
    assert np.corrcoef(joined["c_mean"], joined["c_true"])[0, 1] > 0.9
    with pytest.raises(ValueError, match="another config"):
        truth_on_cost_scale(stored, ["not-a-query"], cost_bounds(used))


def test_simulated_pool_without_stored_truth_names_the_command(tmp_path):
    exp = sim_experiment(tmp_path, n_train=4, n_items=8, train_rewrites=1, train_decodes=1)
    grid = simulate_train(exp)
    write_observations(tmp_path, observation_rows(grid), shard=0)
    with pytest.raises(FileNotFoundError, match=r"no simulator truth .*dars collect"):
        supervise_dataset(exp, DS, n_boot=10)


# ------------------------------------------------------------------------------------------------
# a non-simulated pool (synthetic observations)
# ------------------------------------------------------------------------------------------------
def _real_experiment(root: Path) -> Experiment:
    return Experiment(
        root=str(root),
        benchmarks=[BenchmarkSpec(name=DS, n_train=8)],
        pool=Pool(
            models=[
                ModelSpec(name=n, litellm_model=f"openai/{n}") for n in ("small", "medium", "large")
            ]
        ),
        rewriter=ModelSpec(name="rw", litellm_model="openai/rw"),
        protocol=Protocol(train_rewrites=2, train_decodes=2),
        single_shot_draws=5,
    )


def test_non_simulated_pool_has_no_recovery_and_drops_incomplete_queries(tmp_path):
    root = tmp_path / "run"
    exp = _real_experiment(root)
    obs = synthetic_observations(n_queries=8, n_rewrites=2, n_decodes=2, datasets=(DS,), seed=3)
    # q0003 loses every observation of "large": it cannot be labelled, so it is dropped.
    rows = obs.observations.filter(
        ~((pl.col("query_id") == "q0003") & (pl.col("model") == "large"))
    )
    write_observations(root, observation_rows(rows), shard=0)
    write_supervision(root, DS, "recovery", pl.DataFrame({"stale": [1]}))

    summary = supervise(exp, n_boot=50)
    assert not supervision_exists(root, DS, "recovery")
    assert list_supervision(root, DS) == sorted(t for t in TABLES if t != "recovery")
    values = dict(zip(summary["metric"], summary["value"], strict=True))
    assert values["n_queries_dropped"] == 1 and values["n_queries"] == 7
    assert not any(m.startswith("recovery:") for m in values)
    dars = read_supervision(root, DS, "dars")
    assert "q0003" not in dars["query_id"].to_list() and dars.height == 7 * 3


def test_stage_diagnostics_follow_the_papers_slot_definitions(tmp_path):
    # The paper's winner flip and single-vs-DA disagreement (Appendix C.5), computed by hand on
    # a store holding the hand-built matrix, are what the stage reports by default; the
    # draw-based variants are stored beside them and become the default on request.
    root = tmp_path / "run"
    exp = _real_experiment(root).model_copy(
        update={
            "pool": Pool(models=[ModelSpec(name=n, litellm_model=f"openai/{n}") for n in "AB"]),
            "single_shot_draws": 100,
        }
    )
    assert exp.diagnostics.definition == "paper"
    frame = paper_example(DS)
    write_observations(root, observation_rows(frame), shard=0)
    paper = ref_paper_diagnostics(frame, ["A", "B"], lam=exp.lam)[DS]
    assert paper == {"winner_flip_rate": 2 / 3, "single_vs_da_disagreement": 0.25}

    summary = supervise_dataset(exp, DS, n_boot=50).summary
    values = dict(zip(summary["metric"], summary["value"], strict=True))
    for metric in ("winner_flip_rate", "single_vs_da_disagreement"):
        assert values[metric] == pytest.approx(paper[metric])
    diag = read_supervision(root, DS, "diagnostics")
    shots = read_supervision(root, DS, "single_shot_draws")
    draws = ref_draws_diagnostics(frame, shots, ["A", "B"], lam=exp.lam, beta=exp.beta)[DS]
    assert draws["winner_flip_rate"] == 1.0 and draws["single_vs_da_disagreement"] > 0.25
    single = diag.filter(pl.col("definition").is_not_null())
    assert single.select("metric", "definition", "is_default").rows() == [
        ("winner_flip_rate", "paper", True),
        ("winner_flip_rate", "draws", False),
        ("single_vs_da_disagreement", "paper", True),
        ("single_vs_da_disagreement", "draws", False),
    ]
    assert single["value"].to_list() == pytest.approx(
        [
            paper["winner_flip_rate"],
            draws["winner_flip_rate"],
            paper["single_vs_da_disagreement"],
            draws["single_vs_da_disagreement"],
        ]
    )

    as_draws = exp.model_copy(update={"diagnostics": Diagnostics(definition="draws")})
    summary = supervise_dataset(as_draws, DS, n_boot=50).summary
    values = dict(zip(summary["metric"], summary["value"], strict=True))
    for metric in ("winner_flip_rate", "single_vs_da_disagreement"):
        assert values[metric] == pytest.approx(draws[metric])
    again = read_supervision(root, DS, "diagnostics")
    assert again.filter(~pl.col("is_default"))["definition"].to_list() == ["paper", "paper"]
    assert_frame_equal(
        again.sort("metric", "definition").drop("is_default"),
        diag.sort("metric", "definition").drop("is_default"),
    )


def test_missing_store_names_the_location_and_the_command(tmp_path):
    exp = _real_experiment(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no ok train observations .*dars collect"):
        supervise_dataset(exp, DS)
    with pytest.raises(KeyError, match="not in experiment"):
        supervise_dataset(exp, "demo_math")


def test_subgrid_protocols():
    assert subgrid_protocols(5, 5) == [(1, 1), (1, 5), (2, 2), (3, 3), (5, 1), (5, 5)]
    assert subgrid_protocols(1, 1) == [(1, 1)]
    assert subgrid_protocols(2, 3) == [(1, 1), (1, 3), (2, 1), (2, 2), (2, 3)]
    with pytest.raises(ValueError):
        subgrid_protocols(0, 3)


def test_cost_scope_all_scales_training_costs_over_train_and_test(tmp_path):
    # Issue 16: the paper's code min-max normalises costs over the train and test observations;
    # `cost_scope: all` does so (the default `train` uses the supervised train rows only).
    from dars.evaluation.metrics import all_views_cost_bounds

    root = tmp_path / "run"
    exp = _real_experiment(root)
    train = synthetic_observations(
        n_queries=8, n_rewrites=2, n_decodes=2, datasets=(DS,), seed=3
    ).observations
    test = train.filter((pl.col("rewrite_id") == 0) & (pl.col("decode_id") == 0)).with_columns(
        ("t" + pl.col("query_id")).alias("query_id"),
        pl.lit(-1, pl.Int64).alias("rewrite_id"),
        pl.col("cost_usd") * 10,  # the test views hold the dataset's most expensive calls
    )
    write_observations(root, observation_rows(train), shard=0)
    write_observations(root, observation_rows(test, split="test", view="test_decode"), shard=0)
    used = observation_rows(train)

    supervise(exp, n_boot=50)
    own = read_supervision(root, DS, "dars")
    assert_frame_equal(own, full_dars(used, lam=exp.lam, beta=exp.beta))
    assert own["c_mean"].max() == pytest.approx(1.0, abs=0.2)

    supervise(exp.model_copy(update={"cost_scope": "all"}), n_boot=50)
    pooled = read_supervision(root, DS, "dars")
    both = pl.concat([used, observation_rows(test, split="test", view="test_decode")])
    bounds = all_views_cost_bounds(both)
    assert_frame_equal(pooled, full_dars(used, lam=exp.lam, beta=exp.beta, cost_bounds=bounds))
    assert pooled["c_mean"].max() < 0.2 < own["c_mean"].max()
