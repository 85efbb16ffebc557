"""The collect pre-check (``dars.tasks.pending.nothing_to_collect``): work is left until every
planned rewrite and decode is stored ok and the simulator's truth is current; the module stays
free of Prefect and litellm (the CLI asks it before starting either)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dars.config import load_experiment
from dars.llm.loop import run_sync
from dars.storage.layout import RunLayout
from dars.tasks.collect import decode_shard, rewrite_shard, store_truth
from dars.tasks.pending import (
    nothing_to_collect,
    pending_decode_shards,
    pending_rewrite_shards,
    truth_current,
)
from tests.bench.conftest import load_bench


def _collect(exp) -> None:
    for s in pending_rewrite_shards(exp)[0]:
        run_sync(rewrite_shard(exp, s["dataset"], s["split"], int(s["shard"]), run_id="t"))
    for s in pending_decode_shards(exp)[0]:
        run_sync(
            decode_shard(exp, s["dataset"], s["split"], s["model"], int(s["shard"]), run_id="t")
        )


def test_nothing_to_collect_only_when_every_call_is_stored_and_the_truth_is_current(tmp_path):
    config = load_bench("bench_collect").bench_config(
        tmp_path / "tiny.yaml", n_train=2, n_test=1, models=1, train=(1, 1), shard_size=50
    )
    exp = load_experiment(config, root=str(tmp_path / "run"))
    assert nothing_to_collect(exp) is None  # an empty root
    _collect(exp)
    assert nothing_to_collect(exp) is None  # no truth yet (the decode flow stores it last)
    for b in exp.collected:
        store_truth(exp, b.name)
    said = nothing_to_collect(exp)
    assert said is not None and "the collect flow was not started" in said
    assert str(exp.root) in said

    first = exp.collected[0].name
    truth = RunLayout(exp.root).truth_file(first)
    truth.unlink()
    assert not truth_current(exp, first) and nothing_to_collect(exp) is None
    store_truth(exp, first)
    assert nothing_to_collect(exp) is not None
    # A missing observation shard is work again.
    shard = next(RunLayout(exp.root).observations_dir().rglob("*.parquet"))
    shard.unlink()
    assert nothing_to_collect(exp) is None


def test_the_pre_check_imports_neither_prefect_nor_litellm():
    code = (
        "import sys; import dars.tasks.pending, dars.cli; "
        "print(sorted(m for m in ('prefect', 'litellm', 'torch') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
