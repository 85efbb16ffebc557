"""MLP router: one scikit-learn MLPRegressor predicting q, c (and σ) for every model."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from dars.routers.base import Router, RouterTags, Stats
from dars.routers.registry import register_router
from dars.routers.targets import BatchedTargets, Targets

__all__ = ["MLPRouter"]


def _outputs(targets: Targets) -> np.ndarray:
    """(n, F·M) regression targets: q for every model, then c, then σ when present."""
    parts = [targets.q, targets.c] + ([targets.sigma] if targets.sigma is not None else [])
    return np.concatenate(parts, axis=1)


@register_router("mlp")
class MLPRouter(Router):
    """Multi-output MLP regressor on standardised embeddings; routes by predicted utility.

    Outputs q and c per model, plus σ per model under DARS targets (predicted σ is clipped at 0).
    Defaults from the DARS authors' code: hidden layers (128, 64), ReLU, Adam; the remaining
    scikit-learn defaults (``alpha=1e-4``, ``learning_rate_init=1e-3``, ``max_iter=200``) are kept.
    ``max_iter`` is a fixed budget: convergence warnings are silenced on purpose.

    ``fit_many`` cannot batch scikit-learn's training exactly, so it warm-starts: draw 0 is fitted
    exactly as ``fit`` would, and every other draw starts from draw 0's weights and Adam state and
    runs ``warm_start_epochs`` more epochs on its own targets (``partial_fit``). Those routers are
    close to, not equal to, independent fits, and they inherit a little of draw 0's fit; use
    ``fit_many(..., exact=True)`` when per-draw independence matters more than time.
    bench/bench_routers.py reports the route disagreement against sequential fits.

    Fitted attributes: ``x_mean_``, ``x_scale_`` (standardisation), ``coefs_`` and
    ``intercepts_`` (lists of arrays, the regressor's weights; prediction runs this forward pass in
    numpy so a saved router needs no pickle).
    """

    tags = RouterTags(batched_fit_exact=False)

    def __init__(
        self,
        *,
        hidden_layer_sizes: tuple[int, ...] = (128, 64),
        alpha: float = 1e-4,
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        warm_start_epochs: int = 50,
        random_state: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.warm_start_epochs = warm_start_epochs
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        sizes = self.hidden_layer_sizes
        if (
            not isinstance(sizes, tuple | list)
            or not sizes
            or any(
                isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1 for h in sizes
            )
        ):
            raise ValueError(f"mlp: hidden_layer_sizes must be positive ints, got {sizes!r}")
        self._check_positive_ints("max_iter", "warm_start_epochs")

    def _estimator(self, seed: int) -> MLPRegressor:
        return MLPRegressor(
            hidden_layer_sizes=tuple(int(h) for h in self.hidden_layer_sizes),
            activation="relu",
            solver="adam",
            alpha=float(self.alpha),
            learning_rate_init=float(self.learning_rate_init),
            max_iter=int(self.max_iter),
            random_state=seed,
        )

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_mean_) / self.x_scale_

    def _set_scaler(self, X: np.ndarray) -> None:
        self.x_mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        # Constant columns carry no information; dividing by 1 keeps them finite.
        self.x_scale_ = np.where(scale > 0, scale, 1.0)

    def _keep(self, est: MLPRegressor) -> None:
        self.coefs_ = [w.copy() for w in est.coefs_]
        self.intercepts_ = [b.copy() for b in est.intercepts_]

    def _fit(self, X: np.ndarray, targets: Targets) -> None:
        self._set_scaler(X)
        est = self._estimator(self._seed())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=ConvergenceWarning)
            est.fit(self._standardise(X), _outputs(targets))
        self._keep(est)

    def _fit_batched(
        self, X: np.ndarray, targets: BatchedTargets, chunk_size: int | None
    ) -> list[Router]:
        first = clone(self)
        first._set_scaler(X)
        Xs = first._standardise(X)
        base = first._estimator(first._seed())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=ConvergenceWarning)
            base.fit(Xs, _outputs(targets.draw(0)))
        first._keep(base)
        routers: list[Router] = [first]
        for s in range(1, targets.n_draws):
            est = copy.deepcopy(base)
            y = _outputs(targets.draw(s))
            for _ in range(int(self.warm_start_epochs)):
                est.partial_fit(Xs, y)
            r = clone(self)
            r.x_mean_, r.x_scale_ = first.x_mean_, first.x_scale_
            r._keep(est)
            routers.append(r)
        return routers

    def _forward(self, X: np.ndarray) -> np.ndarray:
        a = self._standardise(X)
        last = len(self.coefs_) - 1
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            a = a @ w + b
            if i != last:
                a = np.maximum(a, 0.0)
        return a

    def _predict_stats(self, X: np.ndarray) -> Stats:
        out = self._forward(X)
        m = self.n_models_
        sigma = np.maximum(out[:, 2 * m : 3 * m], 0.0) if self.has_sigma_ else None
        return Stats(q=out[:, :m], c=out[:, m : 2 * m], sigma=sigma)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"x_mean": self.x_mean_, "x_scale": self.x_scale_}
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            arrays[f"coef_{i}"] = w
            arrays[f"intercept_{i}"] = b
        return {"n_layers": len(self.coefs_)}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.x_mean_ = arrays["x_mean"]
        self.x_scale_ = arrays["x_scale"]
        n = int(meta["n_layers"])
        self.coefs_ = [arrays[f"coef_{i}"] for i in range(n)]
        self.intercepts_ = [arrays[f"intercept_{i}"] for i in range(n)]
