"""MLP router: one multi-output MLP regressor predicting q, c (and σ) for every model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dars.routers._torch import ExactAdam, TorchRouter, first_layer
from dars.routers.base import Router, RouterTags, Stats
from dars.routers.registry import register_router
from dars.routers.targets import BatchedTargets

__all__ = ["MLPRouter"]


def _uniform(gen: torch.Generator, bound: float, *shape: int) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen, dtype=torch.float32) * 2.0 - 1.0) * bound


@register_router("mlp")
class MLPRouter(TorchRouter):
    """Multi-output MLP regressor on standardised embeddings; routes by predicted utility.

    Outputs q and c per model, plus σ per model under DARS targets (predicted σ is clipped at 0).
    The model and its training follow scikit-learn's ``MLPRegressor`` (which this family used
    before it was written in torch) with the settings it had: hidden layers (128, 64) (the DARS
    authors' sizes), ReLU, identity output, squared error with an L2 penalty ``alpha`` on the
    weights (not the biases) divided by the batch size, Glorot-uniform initial weights and biases,
    Adam (``learning_rate_init``), minibatches of ``min(batch_size, n)`` queries reshuffled every
    epoch, and at most ``max_iter`` epochs: training stops early once the epoch's training loss
    has not improved on the best one by ``tol`` for more than ``n_iter_no_change`` epochs in a row.
    Differences (their effect on routes is within seed noise of MLPRegressor's, tested): float32,
    torch's Adam form (ε added to the bias-corrected √v), and no reshuffling when one batch holds
    every query (the order of a full batch does not change its gradient).

    Rows of the targets are training queries, columns models; the output layer predicts the
    F·M columns q (all models), then c, then σ when present. Like sklearn, the gradient of each
    output column is its squared error's, not divided by the number of columns, while the loss
    the stopping rule watches is the mean over columns (``MLPRegressor.loss_curve_``).

    ``fit_many`` trains S draws as one model with a leading draw axis: per-draw weights, per-draw
    shuffles and a per-draw stopping epoch (a stopped draw keeps the weights of its stopping epoch
    while the others go on), and a summed loss, so each draw follows its own fit's trajectory and
    router s equals ``clone(self).fit(X, targets.draw(s))`` (``tags.batched_fit_exact``).

    Fitted attributes: ``x_mean_``, ``x_scale_`` and ``params_`` (``W0``, ``b0``, …, one weight
    matrix (1, fan_in, fan_out) and bias (1, fan_out) per layer).
    """

    tags = RouterTags(needs_torch=True)
    # The model is compute-bound (a 384 × 128 first layer per draw), so blocks barely matter;
    # measured CPU s for 32 draws at 200 queries × 384 dims: blocks of 1: 6.8, 4: 5.9, 8: 6.4,
    # 16: 7.2, 32: 7.5 (larger blocks spill activations out of cache).
    draw_block = 4

    def __init__(
        self,
        *,
        hidden_layer_sizes: tuple[int, ...] = (128, 64),
        alpha: float = 1e-4,
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        batch_size: int = 200,
        tol: float = 1e-4,
        n_iter_no_change: int = 10,
        n_threads: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        Router._validate_params(self)
        sizes = self.hidden_layer_sizes
        if (
            not isinstance(sizes, tuple | list)
            or not sizes
            or any(
                isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1 for h in sizes
            )
        ):
            raise ValueError(f"mlp: hidden_layer_sizes must be positive ints, got {sizes!r}")
        self._check_positive_ints("max_iter", "batch_size", "n_iter_no_change")
        if not self.alpha >= 0:
            raise ValueError(f"mlp: alpha must be >= 0, got {self.alpha!r}")
        if not self.learning_rate_init > 0:
            raise ValueError(
                f"mlp: learning_rate_init must be > 0, got {self.learning_rate_init!r}"
            )
        if not self.tol >= 0:
            raise ValueError(f"mlp: tol must be >= 0, got {self.tol!r}")
        if self.n_threads is not None and (
            not isinstance(self.n_threads, int | np.integer) or self.n_threads < 1
        ):
            raise ValueError("mlp: n_threads must be an int >= 1 or None")

    def _n_layers(self) -> int:
        return len(self.hidden_layer_sizes) + 1

    def _init_params(self, gen: torch.Generator, n_features: int, n_outputs: int) -> dict:
        """Glorot-uniform weights and biases, bound √(6 / (fan_in + fan_out)) (sklearn's)."""
        sizes = [n_features, *(int(h) for h in self.hidden_layer_sizes), n_outputs]
        params = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            bound = float(np.sqrt(6.0 / (fan_in + fan_out)))
            params[f"W{i}"] = _uniform(gen, bound, fan_in, fan_out)
            params[f"b{i}"] = _uniform(gen, bound, fan_out)
        return params

    def _forward(self, params: dict, X: torch.Tensor, **kw: Any) -> dict[str, torch.Tensor]:
        """X: shared queries (n, d) or one batch per draw (S, b, d) -> {"out": (S, ·, F·M)}."""
        if X.ndim == 2:
            a = first_layer(X, params["W0"], params["b0"])
        else:
            a = torch.baddbmm(params["b0"][:, None, :], X, params["W0"])
        for i in range(1, self._n_layers()):
            a = torch.baddbmm(params[f"b{i}"][:, None, :], torch.relu(a), params[f"W{i}"])
        return {"out": a}

    def _outputs_to_stats(self, out: dict[str, torch.Tensor]) -> Stats:
        y = out["out"].numpy().astype(np.float64)
        m = self.n_models_
        sigma = np.maximum(y[..., 2 * m : 3 * m], 0.0) if self.has_sigma_ else None
        return Stats(q=y[..., :m], c=y[..., m : 2 * m], sigma=sigma)

    def _train(
        self, Xt: torch.Tensor, targets: BatchedTargets, seeds: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """Train the draws of ``targets`` together (see the class docstring); draw s is
        initialised and shuffled by a generator seeded with ``seeds[s]``."""
        S, n = targets.n_draws, Xt.shape[0]
        parts = [targets.q, targets.c] + ([targets.sigma] if targets.sigma is not None else [])
        Y = torch.as_tensor(np.concatenate(parts, axis=-1), dtype=torch.float32)  # (S, n, K)
        n_out = Y.shape[-1]
        params = self._init_batched(seeds, Xt.shape[1], n_out)
        # One generator per draw for its shuffles, continuing after its initial weights' draws
        # (as sklearn's random_state does).
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for g in gens:
            self._init_params(g, Xt.shape[1], n_out)
        weights = [params[f"W{i}"] for i in range(self._n_layers())]
        opt = ExactAdam(list(params.values()), lr=float(self.learning_rate_init))
        alpha, tol, patience = float(self.alpha), float(self.tol), int(self.n_iter_no_change)
        batch = min(int(self.batch_size), n)
        draws = torch.arange(S)[:, None]

        best = [float("inf")] * S
        no_gain = [0] * S
        kept: dict[int, dict[str, torch.Tensor]] = {}  # stopped draws: their final weights
        for _ in range(int(self.max_iter)):
            if batch < n:
                order = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (S, n)
            epoch_loss = torch.zeros(S, dtype=torch.float64)
            for lo in range(0, n, batch):
                hi = min(n, lo + batch)
                if batch < n:
                    idx = order[:, lo:hi]
                    xb, yb = Xt[idx], Y[draws, idx]
                else:
                    xb, yb = Xt, Y
                opt.zero_grad()
                err = self._forward(params, xb)["out"] - yb
                sse = (err * err).sum(dim=(1, 2))  # (S,)
                l2 = sum((w * w).sum(dim=(1, 2)) for w in weights)
                # sklearn's gradient: (½·Σ err² + ½·α·Σ w²) / batch, per draw; summing over draws
                # gives each draw its own gradient.
                ((0.5 * sse + (0.5 * alpha) * l2) / (hi - lo)).sum().backward()
                opt.step()
                with torch.no_grad():  # sklearn's reported loss: mean over outputs, × batch / n
                    reported = 0.5 * sse / n_out + (0.5 * alpha) * l2
                    epoch_loss += reported.double() / n
            for s, loss in enumerate(epoch_loss.tolist()):
                if s in kept:
                    continue
                no_gain[s] = no_gain[s] + 1 if loss > best[s] - tol else 0
                best[s] = min(best[s], loss)
                if no_gain[s] > patience:
                    kept[s] = {k: v.detach()[s].clone() for k, v in params.items()}
            if len(kept) == S:
                break
        out = {k: v.detach() for k, v in params.items()}
        for s, final in kept.items():
            for k, v in final.items():
                out[k][s] = v
        return out
