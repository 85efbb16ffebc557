"""Regret-minimising softmax router, conditioned on the cost weight λ."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from dars.routers._torch import DTYPE, TorchRouter, first_layer, glorot, torch_threads, zeros
from dars.routers.base import Router, RouterTags, _check_weight, check_X
from dars.routers.registry import register_router
from dars.routers.targets import BatchedTargets
from dars.utility import DEFAULT_BETA, DEFAULT_LAM, utility

__all__ = ["RMSoftmaxRouter"]


@register_router("rm_softmax")
class RMSoftmaxRouter(TorchRouter):
    """Softmax policy over models that minimises expected regret, with λ as an input.

    Input: the standardised embedding and the λ feature φ(λ) (:meth:`_lam_feature`: log(λ + ε)
    standardised over ``lam_grid``); one ReLU layer z of ``hidden`` units, which also takes φ;
    output: one logit per model, ``W2·z + b2 + φ·(W3·z + b3)``. The λ-scaled head lets the
    ranking of models change with λ per query: with λ entering only the hidden layer as
    λ / max(lam_grid) (the first version: at most 0.1 for six of the demo's nine λ values, beside
    384 standardised embedding inputs), the model learned to ignore it and routed identically at
    every λ (one Pareto point per dataset and view on the demo).

    Training minimises, averaged over queries and over every λ in
    ``lam_grid``, Σ_m softmax_m · (max_k u_k − u_m) with u = q − λc (− βσ under DARS targets: the
    risk-adjusted targets, with this router's ``beta``). A single model serves any λ; λ outside
    the grid is extrapolation.

    The family scores models rather than predicting q/c/σ: ``predict_stats`` is unavailable and
    ``predict_utility`` returns the policy's log-probabilities at λ (their argmax is the route;
    they are not utility estimates). Trained on DARS targets, only this router's ``beta`` is
    defined.

    Defaults (ours): ``hidden=64``, ``lam_grid=(0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)``,
    ``beta=0.2``, full-batch Adam ``lr=1e-2``, ``weight_decay=1e-3``, ``epochs=150`` (chosen on the
    synthetic task of dars.routers.synthetic at demo size: longer training fits single-shot
    noise and routes worse, and costs more), ``lam_feature="log"``, ``lam_tilt=True``,
    ``standardise=True``.

    Architecture switches (defaults: the tuned design above):

    - ``depth``: the number of ReLU layers of ``hidden`` units; φ enters the first, further
      layers are ReLU(W·z + b), the readout (and tilt head) reads the last one.
    - ``lam_feature``: ``"log"`` is φ(λ) above; ``"raw"`` feeds λ itself (φ(λ) = λ), i.e. the
      first layer sees the concatenation [x, λ].
    - ``lam_tilt``: False drops the λ-scaled head: logits ``W2·z + b2``.
    - ``standardise``: False feeds the embeddings as given (no per-feature centring/scaling).

    Presets: ``paper`` — the DARS authors' RM-Softmax router (``methods/rm_softmax.py``), as
    issue 16's reading of their released script states it: an MLP of two hidden layers of 256
    (``hidden=256``, ``depth=2``) on ``[x, raw λ]`` (``lam_feature="raw"``, ``lam_tilt=False``),
    trained over ``lam_grid`` = the 11 values 0, 0.01, …, 0.1. Our reading where the issue is
    silent (not stated numbers): ReLU; this family's regret loss and glorot initialisation; Adam
    with torch's defaults ``lr=1e-3``, ``weight_decay=0``; full batch; ``epochs=150`` (the issue
    gives no budget: ours kept); ``standardise=False`` (x as given, beside a raw λ of the same
    scale as a unit-norm MiniLM embedding's coordinates).
    """

    tags = RouterTags(predicts_stats=False, folds_beta=True, lam_conditioned=True, needs_torch=True)
    presets: ClassVar = {
        "paper": {
            "hidden": 256,
            "depth": 2,
            "lam_grid": (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1),
            "lam_feature": "raw",
            "lam_tilt": False,
            "lr": 1e-3,
            "weight_decay": 0.0,
            "standardise": False,
        }
    }

    def __init__(
        self,
        *,
        hidden: int = 64,
        depth: int = 1,
        lam_grid: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
        beta: float = DEFAULT_BETA,
        epochs: int = 150,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        lam_feature: str = "log",
        lam_tilt: bool = True,
        standardise: bool = True,
        n_threads: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.hidden = hidden
        self.depth = depth
        self.lam_grid = lam_grid
        self.beta = beta
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.lam_feature = lam_feature
        self.lam_tilt = lam_tilt
        self.standardise = standardise
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_positive_ints("hidden", "depth")
        if self.lam_feature not in ("log", "raw"):
            raise ValueError(
                f"rm_softmax: lam_feature must be 'log' or 'raw', got {self.lam_feature!r}"
            )
        for flag in ("lam_tilt", "standardise"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"rm_softmax: {flag} must be a bool, got {getattr(self, flag)!r}")
        grid = self.lam_grid
        if not isinstance(grid, tuple | list) or not grid:
            raise ValueError(f"rm_softmax: lam_grid must be a non-empty tuple, got {grid!r}")
        for lam in grid:
            _check_weight("rm_softmax lam_grid entry", lam)
        if not self.beta >= 0:
            raise ValueError(f"rm_softmax: beta must be >= 0, got {self.beta!r}")

    def _set_scaler(self, X: np.ndarray) -> None:
        if self.standardise:
            super()._set_scaler(X)
        else:  # identity: (X − 0) / 1 is X exactly
            self.x_mean_, self.x_scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])

    def _lam_feature(self, lams: torch.Tensor) -> torch.Tensor:
        """``lam_feature="raw"``: φ(λ) = λ. ``"log"``: φ(λ) = (log(λ + ε) − mean) / std, mean and
        std (ddof 0) over ``lam_grid``; ε is the smallest positive grid value (1 if none). The log
        spreads a grid such as 0, 0.01, …, 2 evenly; φ = 0 for a one-value grid."""
        if self.lam_feature == "raw":
            return lams.to(DTYPE)
        grid = np.array([float(v) for v in self.lam_grid], dtype=np.float64)
        pos = grid[grid > 0]
        eps = float(pos.min()) if pos.size else 1.0
        logs = np.log(grid + eps)
        sd = float(logs.std())
        if sd <= 0:
            return torch.zeros_like(lams)
        return ((torch.log(lams.to(torch.float64) + eps) - float(logs.mean())) / sd).to(DTYPE)

    def _init_params(self, gen: torch.Generator, n_features: int, n_models: int) -> dict:
        h = int(self.hidden)
        params = {
            "Wx": glorot(gen, n_features + 1, h, n_features, h),
            "wl": glorot(gen, n_features + 1, h, h),
            "b1": zeros(h),
        }
        for i in range(1, int(self.depth)):
            params[f"Wh{i}"] = glorot(gen, h, h, h, h)
            params[f"bh{i}"] = zeros(h)
        params["W2"] = glorot(gen, h, n_models, h, n_models)
        params["b2"] = zeros(n_models)
        if self.lam_tilt:
            params["W3"] = glorot(gen, h, n_models, h, n_models)
            params["b3"] = zeros(n_models)
        return params

    def _train_inputs(self, X: torch.Tensor) -> dict[str, Any]:
        return {"lams": torch.tensor([float(v) for v in self.lam_grid], dtype=DTYPE)}

    def _forward(self, params: dict, X: torch.Tensor, **kw: Any) -> dict[str, torch.Tensor]:
        phi = self._lam_feature(kw["lams"])[None, :, None, None]  # (1, G, 1, 1)
        hx = first_layer(X, params["Wx"], params["b1"])  # (S, n, h)
        z = torch.relu(hx[:, None] + phi * params["wl"][:, None, None, :])
        S, G, n, h = z.shape
        zf = z.reshape(S, G * n, h)
        for i in range(1, int(self.depth)):
            zf = torch.relu(torch.baddbmm(params[f"bh{i}"][:, None, :], zf, params[f"Wh{i}"]))
        base = torch.baddbmm(params["b2"][:, None, :], zf, params["W2"]).reshape(S, G, n, -1)
        if not self.lam_tilt:
            return {"logits": base}
        tilt = torch.baddbmm(params["b3"][:, None, :], zf, params["W3"]).reshape(S, G, n, -1)
        return {"logits": base + phi * tilt}

    def _target_tensors(self, targets: BatchedTargets) -> dict[str, torch.Tensor]:
        tgt = super()._target_tensors(targets)
        lams = torch.tensor([float(v) for v in self.lam_grid], dtype=DTYPE)
        sigma = tgt["sigma"][:, None] if "sigma" in tgt else None
        u = utility(  # (S, G, n, M)
            tgt["q"][:, None],
            tgt["c"][:, None],
            sigma,
            lam=lams[None, :, None, None],
            beta=float(self.beta),
        )
        tgt["regret"] = u.max(dim=-1, keepdim=True).values - u
        return tgt

    def _loss(self, out: dict, tgt: dict, has_sigma: bool) -> torch.Tensor:
        p = torch.softmax(out["logits"], dim=-1)
        return (p * tgt["regret"]).sum(dim=-1).mean(dim=(1, 2))

    def predict_utility(
        self, X: Any, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA
    ) -> np.ndarray:
        """Log-probabilities of the routing policy at λ, shape (n_queries, n_models).

        Not utility estimates: this family only ranks models. Their argmax is ``route``.
        """
        self._check_fitted()
        _check_weight("lam", lam)
        _check_weight("beta", beta)
        if self.has_sigma_ and not math.isclose(beta, float(self.beta)):
            raise ValueError(
                f"rm_softmax was trained on risk-adjusted targets with beta={self.beta}; "
                f"beta={beta} is undefined (refit with beta={beta})"
            )
        X = check_X(X, n_features=self.n_features_in_)
        out = self._raw_outputs(X, lams=torch.tensor([float(lam)], dtype=DTYPE))
        return torch.log_softmax(out["logits"][0, 0], dim=-1).numpy().astype(np.float64)

    @classmethod
    def _route_many(
        cls, routers: Sequence[Router], X: np.ndarray, lams: Sequence[float], beta: float
    ) -> np.ndarray:
        """Routes at every λ of ``lams`` for many routers: one forward pass per λ and block of
        draws over their concatenated parameters, as ``predict_utility`` computes it for one
        router (one λ per pass keeps every draw's products the shape of a single router's, so
        routes equal each router's ``route``)."""
        blocks = cls._stacked_blocks(routers)
        if blocks is None:
            return super()._route_many(routers, X, lams, beta)
        first = routers[0]
        first.predict_utility(X[:1], float(lams[0]), beta)  # validates λ and β as route does
        for lam in lams:
            _check_weight("lam", lam)
        out = np.empty((len(lams), len(routers), X.shape[0]), dtype=np.int64)
        with torch_threads(first.n_threads), torch.no_grad():
            Xt = first._standardised(X)
            for lo, params in blocks:
                for i, lam in enumerate(lams):
                    lam_t = torch.tensor([float(lam)], dtype=DTYPE)
                    logits = first._forward(params, Xt, lams=lam_t)["logits"][:, 0]
                    logp = torch.log_softmax(logits, dim=-1).numpy().astype(np.float64)
                    out[i, lo : lo + logp.shape[0]] = np.argmax(logp, axis=-1)
        return out
