"""MIRT router: multidimensional item response theory with a neural query-ability encoder."""

from __future__ import annotations

from typing import Any

import torch

from dars.routers._torch import TorchRouter, bce_with_logits, first_layer, glorot, readout, zeros
from dars.routers.base import RouterTags, Stats
from dars.routers.registry import register_router

__all__ = ["MIRTRouter"]


@register_router("mirt")
class MIRTRouter(TorchRouter):
    """Multidimensional IRT in the style of IRT-Router.

    An MLP (one ReLU layer of ``hidden`` units) maps the query embedding to a latent vector θ of
    ``latent_dim`` dimensions; each model has a discrimination vector a_m and a difficulty b_m, and
    P(success) = sigmoid(a_m·θ − b_m) is trained with binary cross-entropy on q. Cost and σ heads
    are per-model linear readouts of θ (MSE; σ only under DARS targets, clipped at 0 when
    predicted).

    Defaults (ours): ``latent_dim=16``, ``hidden=64``, full-batch Adam ``lr=1e-2``,
    ``weight_decay=1e-3``, ``epochs=150`` (chosen on the synthetic task of
    dars.routers.synthetic at demo size: longer training fits single-shot noise and routes worse,
    and costs more).
    """

    tags = RouterTags(needs_torch=True)

    def __init__(
        self,
        *,
        latent_dim: int = 16,
        hidden: int = 64,
        epochs: int = 150,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        n_threads: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_positive_ints("latent_dim", "hidden")

    def _init_params(self, gen: torch.Generator, n_features: int, n_models: int) -> dict:
        h, D = int(self.hidden), int(self.latent_dim)
        return {
            "W1": glorot(gen, n_features, h, n_features, h),
            "b1": zeros(h),
            "W2": glorot(gen, h, D, h, D),
            "b2": zeros(D),
            "A": glorot(gen, D, n_models, n_models, D),  # discrimination
            "b": zeros(n_models),  # difficulty
            "G": glorot(gen, D, n_models, n_models, D),  # cost readout
            "g0": zeros(n_models),
            "R": glorot(gen, D, n_models, n_models, D),  # sigma readout
            "r0": zeros(n_models),
        }

    def _forward(self, params: dict, X: torch.Tensor, **kw: Any) -> dict[str, torch.Tensor]:
        z = torch.relu(first_layer(X, params["W1"], params["b1"]))
        theta = torch.baddbmm(params["b2"][:, None, :], z, params["W2"])  # (S, n, D)
        q_logit = readout(theta, params["A"], -params["b"])
        c = readout(theta, params["G"], params["g0"])
        sigma = readout(theta, params["R"], params["r0"])
        return {"q_logit": q_logit, "c": c, "sigma": sigma}

    def _loss(self, out: dict, tgt: dict, has_sigma: bool) -> torch.Tensor:
        loss = bce_with_logits(out["q_logit"], tgt["q"])
        loss = loss.mean(dim=(1, 2)) + ((out["c"] - tgt["c"]) ** 2).mean(dim=(1, 2))
        if has_sigma:
            loss = loss + ((out["sigma"] - tgt["sigma"]) ** 2).mean(dim=(1, 2))
        return loss

    def _outputs_to_stats(self, out: dict) -> Stats:
        return Stats(
            q=torch.sigmoid(out["q_logit"]).numpy().astype("float64"),
            c=out["c"].numpy().astype("float64"),
            sigma=out["sigma"].clamp_min(0.0).numpy().astype("float64")
            if self.has_sigma_
            else None,
        )
