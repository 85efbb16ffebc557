"""The supervise stage, which prepares the observations once, codes their keys as integers and
streams the single-shot tables a block of draws at a time, writes exactly the tables that the
per-variant public functions compute from the raw observations (each preparing them again)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dars.config import BenchmarkSpec, Experiment, ModelSpec, Pool, Protocol
from dars.storage import write_observations
from dars.storage.supervision_store import read_supervision
from dars.supervision import ABLATIONS, diagnostics_table, full_dars, single_shot, subgrid_dars
from dars.supervision.tables import DRAWS_PER_CHUNK, dars_labels, subgrid_protocols
from dars.tasks.supervise import supervise_dataset
from tests.simstore import observation_rows

DATASETS = ("demo_mc", "demo_math")
MODELS = ("zeta", "alpha", "mid")  # pool order differs from the sorted order
S = 2 * DRAWS_PER_CHUNK + 3  # three blocks of draws, the last one partial


def _store(root) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    frames = []
    for d in DATASETS:
        for q in range(9):
            for m in MODELS:
                for r in (-1, 0, 1, 2):
                    for dec in range(3):
                        frames.append((d, f"q{q:02d}", m, r, dec))
    frame = pl.DataFrame(
        frames, schema=["dataset", "query_id", "model", "rewrite_id", "decode_id"], orient="row"
    ).with_columns(
        score=pl.Series(rng.integers(0, 3, len(frames)) / 2),
        cost_usd=pl.Series(rng.lognormal(-9, 0.5, len(frames))),
        status=pl.Series(np.where(rng.random(len(frames)) < 0.08, "error", "ok")),
    )
    # Shuffled, so the stage cannot rely on the store's row order.
    write_observations(root, observation_rows(frame.sample(fraction=1.0, seed=3)), shard=0)
    return frame


@pytest.mark.parametrize("dataset", DATASETS)
def test_stage_tables_equal_the_per_variant_functions(tmp_path, dataset):
    root = tmp_path / "run"
    frame = _store(root)
    exp = Experiment(
        root=str(root),
        benchmarks=[BenchmarkSpec(name=d, n_train=9) for d in DATASETS],
        pool=Pool(models=[ModelSpec(name=m, litellm_model=f"openai/{m}") for m in MODELS]),
        rewriter=ModelSpec(name="rw", litellm_model="openai/rw"),
        protocol=Protocol(train_rewrites=3, train_decodes=3, train_include_original=True),
        single_shot_draws=S,
    )
    supervise_dataset(exp, dataset, n_boot=100)
    used = frame.filter((pl.col("dataset") == dataset) & (pl.col("status") == "ok"))
    names, kw = list(MODELS), {"lam": exp.lam, "beta": exp.beta}

    def stored(name: str) -> pl.DataFrame:
        return read_supervision(root, dataset, name)

    agg = full_dars(used, **kw)
    assert_frame_equal(stored("dars"), agg, check_exact=True)
    ablations = pl.concat(
        [
            fn(used, **kw).select(pl.lit(n).alias("supervision"), pl.all())
            for n, fn in ABLATIONS.items()
        ]
    )
    assert_frame_equal(stored("ablations"), ablations, check_exact=True)
    shots = single_shot(used, names, draws=S, seed=exp.seed, lam=exp.lam)
    assert_frame_equal(stored("single_shot_draws"), shots.draws, check_exact=True)
    assert_frame_equal(stored("single_shot_labels"), shots.labels, check_exact=True)
    assert_frame_equal(stored("labels"), dars_labels(agg, names), check_exact=True)
    subgrid = pl.concat(
        [
            subgrid_dars(used, k=k, m=m, seed=exp.seed, **kw).select(
                pl.lit(k, pl.Int32).alias("k"), pl.lit(m, pl.Int32).alias("m"), pl.all()
            )
            for k, m in subgrid_protocols(4, 3)
        ]
    )
    assert_frame_equal(stored("subgrid"), subgrid, check_exact=True)
    diag = diagnostics_table(used, names, draws=S, seed=exp.seed, n_boot=100, **kw)
    assert_frame_equal(stored("diagnostics"), diag, check_exact=True)
