"""Observations prepared once (integer-coded keys) give exactly what the raw frame gives, to
every function that takes observations, whatever the input's row order."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dars.supervision import (
    ABLATIONS,
    PreparedObservations,
    cost_bounds,
    diagnostics_table,
    prepare_observations,
    prepare_once,
    single_shot,
    slot_labels,
    subgrid_dars,
    subgrid_observations,
    variance_components,
)
from tests.supervision.reference import random_obs

MODELS = ["m2", "m0", "m1"]


@pytest.fixture(scope="module")
def frames():
    obs = random_obs(
        seed=11,
        n_datasets=2,
        n_queries=7,
        models=tuple(MODELS),
        k=3,
        m=3,
        include_original=True,
        p_drop_obs=0.1,
        p_error=0.05,
    )
    shuffled = obs.sample(fraction=1.0, shuffle=True, seed=2)
    return obs, prepare_once(shuffled)


def test_prepared_frame_is_coded_and_sorted(frames):
    obs, prep = frames
    assert isinstance(prep, PreparedObservations) and prepare_once(prep) is prep
    assert all(isinstance(prep.frame.schema[c], pl.Enum) for c in ("dataset", "query_id", "model"))
    assert prep.frame["_k"].to_list() == list(range(prep.height))
    assert_frame_equal(prepare_observations(prep), prepare_observations(obs), check_exact=True)
    assert_frame_equal(cost_bounds(prep), cost_bounds(obs), check_exact=True)
    with pytest.raises(ValueError, match="already prepared"):
        prepare_once(prep, cost_bounds=cost_bounds(obs))


def test_every_function_gives_the_same_result_on_prepared_observations(frames):
    obs, prep = frames
    for fn in ABLATIONS.values():
        assert_frame_equal(fn(prep), fn(obs), check_exact=True)
    for k, m in ((1, 1), (2, 3), (3, 2)):
        assert_frame_equal(subgrid_dars(prep, k=k, m=m), subgrid_dars(obs, k=k, m=m))
        assert_frame_equal(
            subgrid_observations(prep, k=k, m=m), subgrid_observations(obs, k=k, m=m)
        )
    a, b = single_shot(prep, MODELS, draws=7), single_shot(obs, MODELS, draws=7)
    assert_frame_equal(a.draws, b.draws, check_exact=True)
    assert_frame_equal(a.labels, b.labels, check_exact=True)
    assert_frame_equal(slot_labels(prep, MODELS), slot_labels(obs, MODELS), check_exact=True)
    assert_frame_equal(variance_components(prep), variance_components(obs), check_exact=True)
    assert_frame_equal(
        diagnostics_table(prep, MODELS, draws=5, n_boot=50),
        diagnostics_table(obs, MODELS, draws=5, n_boot=50),
        check_exact=True,
    )
