"""``dars status --repair`` below the CLI: quarantine the damaged files, list the keys to rerun."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dars.benchmarks.loading import load_splits  # noqa: E402
from dars.plan import KEY, build_plan, expected_rewrites  # noqa: E402
from dars.storage import RunLayout, write_observations, write_rewrites  # noqa: E402
from dars.storage.integrity import check_store  # noqa: E402
from dars.tasks.repair import RERUN_SCHEMA, keys_to_rerun, repair_store  # noqa: E402
from tests.simstore import observation_rows, sim_experiment  # noqa: E402
from tests.storage.conftest import rewrite_row  # noqa: E402


def _collected(root: Path):
    """A 2-model experiment (8 train queries, shard size 4) with its train plan stored in the
    plan's shards, and its train rewrites."""
    exp = sim_experiment(root, n_train=8, n_items=12, train_rewrites=2, train_decodes=1, models=2)
    exp = exp.model_copy(update={"shard_size": 4})
    splits = load_splits(exp)
    plan = build_plan(exp, splits).filter(pl.col("split") == "train")
    for (shard,), part in plan.group_by("shard"):
        rows = observation_rows(part.with_columns(score=pl.lit(1.0), cost_usd=pl.lit(1e-4)))
        write_observations(root, rows, shard=shard)
    rew = expected_rewrites(exp, splits).filter(pl.col("split") == "train")
    for (shard,), part in rew.group_by("shard"):
        rows = [
            rewrite_row(q, r, dataset=d, split="train")
            for d, q, r in part.select("dataset", "query_id", "rewrite_id").iter_rows()
        ]
        write_rewrites(root, rows, shard=shard)
    return exp, splits


def test_repair_moves_the_damaged_shards_and_lists_their_planned_keys(tmp_path):
    exp, splits = _collected(tmp_path)
    layout = RunLayout(tmp_path)
    d = exp.benchmarks[0].name
    model = exp.pool.names[1]
    obs = layout.observation_file(d, "train", model, 1)
    rew = layout.rewrite_file(d, "train", 0)
    obs_bytes = obs.read_bytes()[:100]
    obs.write_bytes(obs_bytes)  # truncated
    rew.write_bytes(b"")
    check = check_store(tmp_path)
    assert {(x.store, x.path, x.shard) for x in check.damaged} == {
        ("observations", obs, 1),
        ("rewrites", rew, 0),
    }
    assert check.damaged[0].partition == {"dataset": d, "split": "train", "model": model}

    done = repair_store(exp, check.damaged)
    assert [(m.source, m.target) for m in done.moved] == [
        (obs, tmp_path / "quarantine" / obs.relative_to(tmp_path)),
        (rew, tmp_path / "quarantine" / rew.relative_to(tmp_path)),
    ]
    assert done.moved[0].target.read_bytes() == obs_bytes  # moved as it was, not rewritten
    assert not obs.exists() and not rew.exists() and check_store(tmp_path).ok

    keys = done.keys
    assert keys.schema == pl.Schema(RERUN_SCHEMA)
    plan = build_plan(exp, splits).filter(
        (pl.col("split") == "train") & (pl.col("model") == model) & (pl.col("shard") == 1)
    )
    got = keys.filter(pl.col("store") == "observations").select(KEY)
    assert got.equals(plan.select(KEY))
    assert got.height == 4 * 2  # 4 queries × 2 rewrites × 1 decode
    rw = keys.filter(pl.col("store") == "rewrites")
    assert rw.height == 4 * 2 and rw["model"].is_null().all() and rw["decode_id"].is_null().all()
    assert set(rw["shard"]) == {0}


def test_keys_to_rerun_skips_keys_stored_again_and_files_without_a_shard(tmp_path):
    exp, _ = _collected(tmp_path)
    assert keys_to_rerun(exp, []).height == 0
    check_store(tmp_path)  # a sound store has nothing to repair
    layout = RunLayout(tmp_path)
    path = layout.observation_file(exp.benchmarks[0].name, "train", exp.pool.names[0], 0)
    path.write_bytes(b"PAR1")
    damaged = check_store(tmp_path).damaged
    done = repair_store(exp, damaged)
    assert done.keys.height == 8
    # Damaged again after a rerun: the second quarantined copy does not overwrite the first.
    path.write_bytes(b"PAR1 again")
    again = repair_store(exp, check_store(tmp_path).damaged)
    assert again.moved[0].target.name == "part-00000.parquet.1"
    assert again.moved[0].target.read_bytes() == b"PAR1 again"
    assert done.moved[0].target.read_bytes() == b"PAR1"
