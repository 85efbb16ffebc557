"""The shared torch machinery (dars.routers._torch): chunked and batched training of σ targets
give the routers a one-draw fit gives."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from dars.routers import BatchedTargets, make_router, predict_stats_many


@pytest.mark.parametrize("family", ["mirt", "graph_router"])
def test_chunking_and_sigma_targets_do_not_change_torch_results(family, task):
    # Two DARS-like draws with sigma (e.g. two ablations) trained together vs in chunks of one.
    t = task.targets
    bt = BatchedTargets.stack([t, type(t)(q=t.q[::-1], c=t.c, sigma=t.sigma, models=t.models)])
    router = make_router(family, random_state=0, epochs=60)
    whole = router.fit_many(task.X_train, bt)
    chunked = router.fit_many(task.X_train, bt, chunk_size=1)
    assert all(r.has_sigma_ for r in whole)
    np.testing.assert_allclose(
        predict_stats_many(whole, task.X_test).sigma,
        predict_stats_many(chunked, task.X_test).sigma,
        rtol=0,
        atol=1e-5,
    )
    single = clone(whole[1]).fit(task.X_train, bt.draw(1))  # its own draw seed
    np.testing.assert_allclose(
        whole[1].predict_utility(task.X_test), single.predict_utility(task.X_test), atol=1e-5
    )


@pytest.mark.parametrize("family", ["mirt", "rm_softmax"])
def test_each_draw_trains_from_its_own_seed(family, task):
    # _train takes one seed per draw: draw s of a batched fit equals a one-draw fit seeded
    # seeds[s], whatever the other draws' seeds (independently seeded draws batch exactly).
    draws = task.single_shot(3, seed=2)
    proto = make_router(family, epochs=15)
    proto._set_scaler(task.X_train)
    Xt = proto._standardised(task.X_train)
    together = proto._train(Xt, draws, [5, 6, 7])
    alone = clone(proto).set_params(random_state=7).fit(task.X_train, draws.draw(2))
    for k, v in together.items():
        np.testing.assert_allclose(v[2].numpy(), alone.params_[k][0].numpy(), rtol=0, atol=1e-5)
    assert not np.array_equal(together["W2"][0], together["W2"][1])  # seeds 5 and 6 differ
