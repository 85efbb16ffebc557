"""graph_router's ``paper`` preset: conformance, the paper numbers, and fidelity to a slow
reference written from issue 16's description of the authors' GraphRouter (not from our code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dars.routers import Stats, make_router
from dars.routers.synthetic import make_synthetic_task
from dars.routers.testing import check_router

PAPER = {
    "embed_dim": 128,  # node dimension 128
    "hidden": (256, 128),  # edge MLP (256, 128)
    "model_nodes": "onehot",  # model nodes from encoded model features
    "edge_features": "concat",  # [query node, model node]
    "quality_loss": "mse",  # MSE on q (and c, σ)
    "lr": 1e-3,  # Adam's default (our reading)
    "weight_decay": 0.0,
    "epochs": 150,
}


def test_paper_preset_sets_exactly_the_paper_numbers():
    params = make_router("graph_router", preset="paper").get_params()
    assert {k: params[k] for k in PAPER} == PAPER


def test_tuned_defaults_are_unchanged():
    params = make_router("graph_router").get_params()
    assert {k: params[k] for k in PAPER} == {
        "embed_dim": 16,
        "hidden": 64,
        "model_nodes": "learned",
        "edge_features": "interactions",
        "quality_loss": "bce",
        "lr": 1e-2,
        "weight_decay": 1e-3,
        "epochs": 150,
    }


def test_paper_preset_conforms():
    # A shorter budget: conformance does not depend on it, and the suite stays quick.
    check_router(make_router("graph_router", preset="paper", random_state=0, epochs=40))


@pytest.mark.parametrize(
    "param",
    [
        {"hidden": ()},
        {"hidden": (8, 0)},
        {"hidden": (8, True)},
        {"model_nodes": "text"},
        {"edge_features": "sum"},
        {"quality_loss": "hinge"},
    ],
)
def test_bad_paper_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"graph_router: {name}"):
        make_router("graph_router", **param).fit(task.X_train, task.targets)


# ---------------------------------------------------------------------------------- fidelity
def _glorot(gen: torch.Generator, fan_in: int, fan_out: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float32) * 2.0 - 1.0) * bound


def reference_paper_graph_router(X, q, c, sigma, X_test, *, seed, epochs=150, lr=1e-3):
    """GraphRouter as issue 16 describes the authors' version, one model at a time.

    Query node: standardised x through a linear map to 128. Model node: the model's one-hot
    feature vector through a linear encoder to 128. Edge: [query node, model node] (256)
    → ReLU 256 → ReLU 128 → (q, c, σ), each regressed with MSE, summed. Plain full-batch
    torch.optim.Adam. Glorot-uniform weights and zero biases drawn in the order
    query map, model encoder, edge layers, so the same seed gives the same start.
    Returns predicted (q, c, σ ≥ 0) on X_test, each (n_test, n_models).
    """
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    Xt = torch.as_tensor((X - mean) / scale, dtype=torch.float32)
    Xv = torch.as_tensor((X_test - mean) / scale, dtype=torch.float32)
    n_models = q.shape[1]
    gen = torch.Generator().manual_seed(seed)
    d = X.shape[1]
    P, p0 = _glorot(gen, d, 128), torch.zeros(128)
    Wm, bm = _glorot(gen, n_models, 128), torch.zeros(128)
    W1, b1 = _glorot(gen, 256, 256), torch.zeros(256)
    W2, b2 = _glorot(gen, 256, 128), torch.zeros(128)
    W3, b3 = _glorot(gen, 128, 3), torch.zeros(3)
    weights = [P, p0, Wm, bm, W1, b1, W2, b2, W3, b3]
    for w in weights:
        w.requires_grad_(True)
    onehot = torch.eye(n_models)
    targets = [torch.as_tensor(a, dtype=torch.float32) for a in (q, c, sigma)]

    def predict(Xs):
        query = Xs @ P + p0
        outs = []
        for j in range(n_models):
            model = onehot[j] @ Wm + bm
            edge = torch.cat([query, model.expand(len(query), 128)], dim=1)
            h = torch.relu(edge @ W1 + b1)
            h = torch.relu(h @ W2 + b2)
            outs.append(h @ W3 + b3)
        return torch.stack(outs, dim=1)  # (n, M, 3)

    opt = torch.optim.Adam(weights, lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        out = predict(Xt)
        loss = sum(((out[..., i] - targets[i]) ** 2).mean() for i in range(3))
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = predict(Xv).double().numpy()
    return out[..., 0], out[..., 1], np.clip(out[..., 2], 0.0, None)


@pytest.fixture(scope="module")
def small_task():
    return make_synthetic_task(n_train=80, n_test=80, n_features=16, n_models=4, seed=2)


def test_paper_preset_matches_the_reference(small_task):
    t = small_task
    router = make_router("graph_router", preset="paper", random_state=7)
    router.fit(t.X_train, t.targets)
    got = router.predict_stats(t.X_test)
    ref_q, ref_c, ref_s = reference_paper_graph_router(
        t.X_train, t.targets.q, t.targets.c, t.targets.sigma, t.X_test, seed=7
    )
    # Same initial weights (same seed, same draws), same loss and optimiser: the only
    # difference is rounding (our Adam is written with correctly rounded ops, torch's fuses
    # them), measured at 6e-7 here after 150 steps. atol 1e-4 leaves room for other BLAS
    # builds and still fails on any changed paper number: hidden (256, 64), lr 1e-2, BCE on q,
    # interaction edge features, learned model nodes, weight decay 1e-3 or 140 epochs each move
    # predictions by 1e-2 to 0.25 (measured).
    np.testing.assert_allclose(got.q, ref_q, atol=1e-4)
    np.testing.assert_allclose(got.c, ref_c, atol=1e-4)
    np.testing.assert_allclose(got.sigma, ref_s, atol=1e-4)
    # Routes: identical wherever the reference's best model leads the runner-up by more than
    # 1e-3 in utility (closer calls may flip within that rounding); that is most queries.
    ref_u = np.sort(Stats(q=ref_q, c=ref_c, sigma=ref_s).utility(), axis=1)
    clear = ref_u[:, -1] - ref_u[:, -2] > 1e-3
    ref_routes = Stats(q=ref_q, c=ref_c, sigma=ref_s).utility().argmax(axis=1)
    assert clear.mean() >= 0.9
    np.testing.assert_array_equal(router.route(t.X_test)[clear], ref_routes[clear])
