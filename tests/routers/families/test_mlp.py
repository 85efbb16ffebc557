"""mlp: a scikit-learn MLPRegressor; its batched fit is a documented warm start."""

from __future__ import annotations

import numpy as np
import pytest

from dars.routers import RouterTags, get_router_class, make_router


def test_declares_an_inexact_batched_fit():
    assert get_router_class("mlp").tags == RouterTags(batched_fit_exact=False)


def test_batched_fit_is_a_documented_warm_start(task, single_shot):
    sequential = [
        make_router("mlp", random_state=0).fit(task.X_train, single_shot.draw(s))
        for s in range(single_shot.n_draws)
    ]
    batched = make_router("mlp", random_state=0).fit_many(task.X_train, single_shot)
    # Draw 0 is fitted exactly as fit() would.
    np.testing.assert_array_equal(
        batched[0].predict_utility(task.X_test), sequential[0].predict_utility(task.X_test)
    )
    # Other draws are warm-started: not equal, but they learned their own draw and route about
    # as well as independent fits do.
    assert not np.array_equal(
        batched[1].predict_utility(task.X_test), sequential[1].predict_utility(task.X_test)
    )
    span = task.oracle_value() - task.random_value()
    for s in range(1, single_shot.n_draws):
        got = task.value(batched[s].route(task.X_test))
        assert abs(got - task.value(sequential[s].route(task.X_test))) < 0.15 * span
    # exact=True gives the sequential fits back.
    exact = make_router("mlp", random_state=0).fit_many(task.X_train, single_shot, exact=True)
    for r, ref in zip(exact, sequential, strict=True):
        np.testing.assert_array_equal(
            r.predict_utility(task.X_test), ref.predict_utility(task.X_test)
        )


@pytest.mark.parametrize(
    "param", [{"hidden_layer_sizes": (0,)}, {"hidden_layer_sizes": ()}, {"max_iter": 0}]
)
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"mlp: {name}"):
        make_router("mlp", **param).fit(task.X_train, task.targets)
