"""The simulator's truth table (``dars.sim.truth.simulated_truth``) against a slow obvious
reference: the world's expected score averaged over the paraphrase ids, the expected cost at the
pool's prices."""

from __future__ import annotations

import polars as pl
import pytest

from dars.benchmarks.loading import load_splits
from dars.config import ModelSpec, Pool
from dars.sim import TRUTH_REWRITES, SimWorld, simulated_truth
from tests.simstore import sim_experiment

DS = "demo_span"  # span items: partial credit enters p_true


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    base = sim_experiment(tmp_path_factory.mktemp("truth"), benchmark=DS, n_train=3, n_items=6)
    # Pool names differ from the sim ids, and one model's prices are the config's own.
    pool = Pool(
        models=[
            ModelSpec(name="a", litellm_model="dars-sim/mid"),
            ModelSpec(
                name="b",
                litellm_model="dars-sim/strong-expensive",
                input_price_per_m=1.0,
                output_price_per_m=2.0,
            ),
        ]
    )
    return base.model_copy(update={"pool": pool})


def test_one_row_per_train_query_and_pool_model(exp) -> None:
    truth = simulated_truth(exp, DS, world=SimWorld())
    train = sorted(it.query_id for it in load_splits(exp)[DS]["train"])
    assert truth.columns == ["dataset", "query_id", "model", "p_true", "expected_cost_usd"]
    assert truth.select("query_id", "model").rows() == [(q, m) for q in train for m in "ab"]
    assert (truth["dataset"] == DS).all() and truth["p_true"].is_between(0, 1).all()


def test_truth_matches_a_slow_reference(exp) -> None:
    world = SimWorld()
    truth = simulated_truth(exp, DS, world=world, truth_rewrites=5)
    ref = SimWorld()
    ref.register_items(DS, load_splits(exp)[DS]["train"])
    for row in truth.iter_rows(named=True):
        sim_id = {"a": "mid", "b": "strong-expensive"}[row["model"]]
        scores = [ref.true_expected_score(DS, row["query_id"], sim_id, r) for r in range(5)]
        assert row["p_true"] == pytest.approx(sum(scores) / 5, rel=1e-12)
        pt, ct = ref.expected_tokens(DS, row["query_id"], sim_id)
        m = ref.models[sim_id]
        prices = (m.input_price_per_m, m.output_price_per_m) if row["model"] == "a" else (1, 2)
        cost = (pt * prices[0] + ct * prices[1]) / 1e6
        assert row["expected_cost_usd"] == pytest.approx(cost, rel=1e-12)
    # The given world is copied, never changed: its items stay unregistered.
    assert world.register_items(DS, []) == 0


def test_default_is_the_process_world_and_many_rewrites(exp) -> None:
    assert TRUTH_REWRITES == 64
    default = simulated_truth(exp, DS)
    assert default.equals(simulated_truth(exp, DS, world=SimWorld()))
    # Averaging over more paraphrase ids changes p_true but not the cost.
    few = simulated_truth(exp, DS, truth_rewrites=2)
    assert not default["p_true"].equals(few["p_true"])
    assert default["expected_cost_usd"].equals(few["expected_cost_usd"])
    assert default.schema == pl.Schema(
        {
            "dataset": pl.String,
            "query_id": pl.String,
            "model": pl.String,
            "p_true": pl.Float64,
            "expected_cost_usd": pl.Float64,
        }
    )
