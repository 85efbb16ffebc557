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

    ``separate_regressors=True`` trains one such network per target field instead (q, c and, under
    DARS targets, σ: F networks of M outputs each, every one with its own stopping epoch, as F
    separate ``MLPRegressor`` fits would), all initialised and shuffled from the draw's seed.
    ``clip_predictions=True`` clips the predicted q, c and σ to [0, 1].

    Presets. ``tuned`` (the constructor defaults): the one multi-output network above, at most
    200 epochs, no clipping (σ clipped at 0 only). ``paper``: the DARS authors' MLP router as
    issue 16 reads their released ``methods/*.py`` (MIT): separate q, c and σ regressors
    (``separate_regressors=True``), hidden layers (128, 64), ``max_iter=800``, predictions
    clipped to [0, 1] (``clip_predictions=True``): all four from issue 16's reading of the
    authors' script. Our reading, not stated numbers: the regressors are scikit-learn
    ``MLPRegressor`` with its defaults for everything the issue does not list (ReLU, Adam,
    ``alpha=1e-4``, ``learning_rate_init=1e-3``, ``batch_size=min(200, n)``, ``tol=1e-4``,
    ``n_iter_no_change=10``, Glorot-uniform initialisation); each regressor gets the draw's seed
    as its ``random_state`` (so the F networks start from the same weights and see the same
    shuffles); inputs are standardised as in ``tuned`` (the issue lists no difference in input
    handling for this family, where it does for MIRT).

    Fitted attributes: ``x_mean_``, ``x_scale_`` and ``params_`` (``W0``, ``b0``, …, one weight
    matrix (1, fan_in, fan_out) and bias (1, fan_out) per layer; with ``separate_regressors``
    (1, F, fan_in, fan_out) and (1, F, fan_out), network f predicting field f).
    """

    tags = RouterTags(needs_torch=True)
    # The model is compute-bound (a 384 × 128 first layer per draw), so blocks barely matter;
    # measured CPU s for 32 draws at 200 queries × 384 dims: blocks of 1: 6.8, 4: 5.9, 8: 6.4,
    # 16: 7.2, 32: 7.5 (larger blocks spill activations out of cache).
    draw_block = 4
    presets = {
        "paper": {
            # Issue 16's reading of the authors' methods/*.py (see the class docstring).
            "separate_regressors": True,
            "hidden_layer_sizes": (128, 64),
            "max_iter": 800,
            "clip_predictions": True,
            # Our reading: scikit-learn MLPRegressor defaults (the issue lists no other value).
            "alpha": 1e-4,
            "learning_rate_init": 1e-3,
            "batch_size": 200,
            "tol": 1e-4,
            "n_iter_no_change": 10,
        }
    }

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
        separate_regressors: bool = False,
        clip_predictions: bool = False,
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
        self.separate_regressors = separate_regressors
        self.clip_predictions = clip_predictions
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
        for flag in ("separate_regressors", "clip_predictions"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise ValueError(f"mlp: {flag} must be a bool, got {getattr(self, flag)!r}")
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
        """X: shared queries (n, d) -> {"out": (S, n, F·M)}: q of every model, then c, then σ."""
        if not self.separate_regressors:
            return self._forward_nets(params, X)
        S, F = params["W0"].shape[:2]
        nets = {k: v.reshape(S * F, *v.shape[2:]) for k, v in params.items()}
        out = self._forward_nets(nets, X)["out"]  # (S·F, n, M), network s·F + f: field f
        out = out.reshape(S, F, *out.shape[1:]).permute(0, 2, 1, 3)
        return {"out": out.reshape(S, out.shape[1], -1)}

    def _forward_nets(self, params: dict, X: torch.Tensor) -> dict[str, torch.Tensor]:
        """Networks with a leading axis U (draws, or draws × fields): X shared queries (n, d) or
        one batch per network (U, b, d) -> {"out": (U, ·, outputs)}."""
        if X.ndim == 2:
            a = first_layer(X, params["W0"], params["b0"])
        else:
            a = torch.baddbmm(params["b0"][:, None, :], X, params["W0"])
        for i in range(1, self._n_layers()):
            a = torch.baddbmm(params[f"b{i}"][:, None, :], torch.relu(a), params[f"W{i}"])
        return {"out": a}

    def _outputs_to_stats(self, out: dict[str, torch.Tensor]) -> Stats:
        y = out["out"].numpy().astype(np.float64)
        if self.clip_predictions:
            y = np.clip(y, 0.0, 1.0)
        m = self.n_models_
        sigma = np.maximum(y[..., 2 * m : 3 * m], 0.0) if self.has_sigma_ else None
        return Stats(q=y[..., :m], c=y[..., m : 2 * m], sigma=sigma)

    def _train(
        self, Xt: torch.Tensor, targets: BatchedTargets, seeds: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """Train the draws of ``targets`` together (see the class docstring); draw s is
        initialised and shuffled by a generator seeded with ``seeds[s]``.

        Training runs over U networks: the S draws, or with ``separate_regressors`` the S·F
        (draw, field) pairs, network s·F + f fitting field f of draw s from draw s's seed; each
        network has its own loss and stopping epoch."""
        S, n = targets.n_draws, Xt.shape[0]
        parts = [targets.q, targets.c] + ([targets.sigma] if targets.sigma is not None else [])
        Y = torch.as_tensor(np.concatenate(parts, axis=-1), dtype=torch.float32)  # (S, n, F·M)
        if self.separate_regressors:
            F, M = len(parts), targets.n_models
            Y = Y.reshape(S, n, F, M).permute(0, 2, 1, 3).reshape(S * F, n, M).contiguous()
            seeds = [seed for seed in seeds for _ in range(F)]
        params = self._fit_nets(Xt, Y, seeds)
        if self.separate_regressors:
            params = {k: v.reshape(S, F, *v.shape[1:]) for k, v in params.items()}
        return params

    def _fit_nets(
        self, Xt: torch.Tensor, Y: torch.Tensor, seeds: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """Train U networks together on targets Y (U, n, outputs); network u is initialised and
        shuffled by a generator seeded with ``seeds[u]``. Returns parameters (U, ...)."""
        U, n = Y.shape[0], Xt.shape[0]
        n_out = Y.shape[-1]
        params = self._init_batched(seeds, Xt.shape[1], n_out)
        # One generator per network for its shuffles, continuing after its initial weights' draws
        # (as sklearn's random_state does).
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for g in gens:
            self._init_params(g, Xt.shape[1], n_out)
        weights = [params[f"W{i}"] for i in range(self._n_layers())]
        opt = ExactAdam(list(params.values()), lr=float(self.learning_rate_init))
        alpha, tol, patience = float(self.alpha), float(self.tol), int(self.n_iter_no_change)
        batch = min(int(self.batch_size), n)
        nets = torch.arange(U)[:, None]

        best = [float("inf")] * U
        no_gain = [0] * U
        kept: dict[int, dict[str, torch.Tensor]] = {}  # stopped networks: their final weights
        for _ in range(int(self.max_iter)):
            if batch < n:
                order = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (U, n)
            epoch_loss = torch.zeros(U, dtype=torch.float64)
            for lo in range(0, n, batch):
                hi = min(n, lo + batch)
                if batch < n:
                    idx = order[:, lo:hi]
                    xb, yb = Xt[idx], Y[nets, idx]
                else:
                    xb, yb = Xt, Y
                opt.zero_grad()
                err = self._forward_nets(params, xb)["out"] - yb
                sse = (err * err).sum(dim=(1, 2))  # (U,)
                l2 = sum((w * w).sum(dim=(1, 2)) for w in weights)
                # sklearn's gradient: (½·Σ err² + ½·α·Σ w²) / batch, per network; summing over
                # networks gives each its own gradient.
                ((0.5 * sse + (0.5 * alpha) * l2) / (hi - lo)).sum().backward()
                opt.step()
                with torch.no_grad():  # sklearn's reported loss: mean over outputs, × batch / n
                    reported = 0.5 * sse / n_out + (0.5 * alpha) * l2
                    epoch_loss += reported.double() / n
            for u, loss in enumerate(epoch_loss.tolist()):
                if u in kept:
                    continue
                no_gain[u] = no_gain[u] + 1 if loss > best[u] - tol else 0
                best[u] = min(best[u], loss)
                if no_gain[u] > patience:
                    kept[u] = {k: v.detach()[u].clone() for k, v in params.items()}
            if len(kept) == U:
                break
        out = {k: v.detach() for k, v in params.items()}
        for u, final in kept.items():
            for k, v in final.items():
                out[k][u] = v
        return out
