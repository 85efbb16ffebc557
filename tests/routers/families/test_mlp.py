"""mlp: a torch MLP trained like scikit-learn's MLPRegressor; its batched fit is exact."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from dars.routers import BatchedTargets, RouterTags, draw_seed, get_router_class, make_router
from dars.routers.targets import Targets
from dars.utility import DEFAULT_LAM


def _weights(router):
    return {k: v.numpy() for k, v in router.params_.items()}


def _assert_same(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=0, err_msg=k)


def test_declares_an_exact_batched_torch_fit():
    assert get_router_class("mlp").tags == RouterTags(needs_torch=True)


@pytest.mark.parametrize(
    "params",
    [
        {},  # full batch (160 queries <= 200)
        {"batch_size": 64, "max_iter": 30},  # minibatches, reshuffled per draw each epoch
        {"tol": 0.05, "n_iter_no_change": 2},  # draws stop early, at different epochs
    ],
)
def test_batched_fit_equals_independent_fits(task, params):
    draws = task.single_shot(5, seed=3)
    proto = make_router("mlp", random_state=0, hidden_layer_sizes=(32, 16), **params)
    batched = proto.fit_many(task.X_train, draws, chunk_size=3)  # chunks of 3 and 2
    for s, r in enumerate(batched):
        ref = make_router(
            "mlp", random_state=draw_seed(0, s), hidden_layer_sizes=(32, 16), **params
        )
        ref.fit(task.X_train, draws.draw(s))
        _assert_same(_weights(r), _weights(ref))
        np.testing.assert_array_equal(r.route(task.X_test), ref.route(task.X_test))


def test_early_stopping_follows_sklearns_rule(task):
    # With a huge tol only the first epoch counts as an improvement (on an infinite best loss):
    # training stops once more than n_iter_no_change epochs in a row did not improve, i.e.
    # after epoch n_iter_no_change + 2, as MLPRegressor does.
    def fit(**kw):
        return make_router("mlp", random_state=0, hidden_layer_sizes=(16,), **kw).fit(
            task.X_train, task.targets
        )

    stopped = fit(tol=1e9, n_iter_no_change=3, max_iter=500)
    _assert_same(_weights(stopped), _weights(fit(max_iter=5)), atol=0)
    assert not np.array_equal(_weights(stopped)["W0"], _weights(fit(max_iter=6))["W0"])


def test_each_draw_can_have_its_own_seed(task):
    # _train takes one seed per draw: a draw's fit depends on its own seed and targets only, not
    # on the other draws' (the independent single-shot draws of the paper protocol).
    draws = task.single_shot(3, seed=4)
    proto = make_router("mlp", hidden_layer_sizes=(16,), batch_size=64, max_iter=20)
    proto._set_scaler(task.X_train)
    Xt = proto._standardised(task.X_train)
    together = proto._train(Xt, draws, [11, 12, 13])
    with_other_first = proto._train(
        Xt, BatchedTargets.stack([draws.draw(0), draws.draw(2)]), [7, 13]
    )
    alone = make_router("mlp", hidden_layer_sizes=(16,), batch_size=64, max_iter=20)
    alone.set_params(random_state=13).fit(task.X_train, draws.draw(2))
    for k, v in together.items():
        np.testing.assert_allclose(v[2].numpy(), alone.params_[k][0].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(v[2].numpy(), with_other_first[k][1].numpy(), atol=1e-5)
        assert not torch.equal(v[0], v[1])


def _sklearn_value(task, targets: Targets, seed: int) -> float:
    """Test value of the estimator this family used before (MLPRegressor with its settings)."""
    x_mean, x_scale = task.X_train.mean(0), task.X_train.std(0)
    x_scale = np.where(x_scale > 0, x_scale, 1.0)
    y = np.concatenate([targets.q, targets.c], axis=1)
    est = MLPRegressor(hidden_layer_sizes=(128, 64), random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit((task.X_train - x_mean) / x_scale, y)
    pred = est.predict((task.X_test - x_mean) / x_scale)
    m = targets.n_models
    return task.value(np.argmax(pred[:, :m] - DEFAULT_LAM * pred[:, m:], axis=1))


def test_routes_as_well_as_the_sklearn_mlp_within_seed_noise(task):
    draws = task.single_shot(6, seed=5)
    ours = [
        task.value(
            make_router("mlp", random_state=s).fit(task.X_train, draws.draw(s)).route(task.X_test)
        )
        for s in range(draws.n_draws)
    ]
    theirs = [_sklearn_value(task, draws.draw(s), s) for s in range(draws.n_draws)]
    spread = max(np.std(ours, ddof=1), np.std(theirs, ddof=1))
    # Mean test utility of 6 independently seeded single-shot routers each: the means agree
    # within three standard errors of their difference.
    assert abs(np.mean(ours) - np.mean(theirs)) <= 3 * spread * np.sqrt(2 / draws.n_draws)
    assert np.mean(ours) > task.random_value()


@pytest.mark.parametrize(
    "param",
    [
        {"hidden_layer_sizes": (0,)},
        {"hidden_layer_sizes": ()},
        {"max_iter": 0},
        {"batch_size": 0},
        {"n_iter_no_change": 0},
        {"alpha": -1.0},
        {"learning_rate_init": 0.0},
        {"tol": -1.0},
    ],
)
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"mlp: {name}"):
        make_router("mlp", **param).fit(task.X_train, task.targets)
