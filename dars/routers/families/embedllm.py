"""EmbedLLM-style router: learned model embeddings scored against projected query embeddings."""

from __future__ import annotations

from typing import Any

import torch

from dars.routers._torch import TorchRouter, bce_with_logits, first_layer, glorot, readout, zeros
from dars.routers.base import RouterTags, Stats
from dars.routers.registry import register_router
from dars.routers.targets import BatchedTargets
from dars.utility import DEFAULT_BETA

__all__ = ["EmbedLLMRouter"]


@register_router("embedllm")
class EmbedLLMRouter(TorchRouter):
    """Matrix-factorisation router in the style of EmbedLLM.

    A query embedding is projected linearly to ``embed_dim``; each model has a learned quality
    embedding and a cost embedding. Quality logit = ⟨projected query, model quality embedding⟩ +
    model bias (binary cross-entropy), cost = ⟨projected query, model cost embedding⟩ + bias (MSE).
    Under DARS targets the quality target is the risk-adjusted clip(μ − βσ, 0, 1), so σ is folded
    in at fit time with this router's ``beta`` (predicted ``Stats.risk_beta``) and utilities are
    only defined for that β; under single-shot targets it is the drawn score.

    Defaults (ours; the original trains on far larger score matrices): ``embed_dim=64``,
    ``beta=0.2`` (DARS), full-batch Adam ``lr=1e-2``, ``weight_decay=1e-3``, ``epochs=150``
    (chosen on the synthetic task of dars.routers.synthetic at demo size: longer training fits
    single-shot noise and routes worse, and costs more).
    """

    tags = RouterTags(folds_beta=True, needs_torch=True)

    def __init__(
        self,
        *,
        embed_dim: int = 64,
        beta: float = DEFAULT_BETA,
        epochs: int = 150,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        n_threads: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.embed_dim = embed_dim
        self.beta = beta
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_positive_ints("embed_dim")
        if not self.beta >= 0:
            raise ValueError(f"embedllm: beta must be >= 0, got {self.beta!r}")

    def _init_params(self, gen: torch.Generator, n_features: int, n_models: int) -> dict:
        k = int(self.embed_dim)
        return {
            "P": glorot(gen, n_features, k, n_features, k),
            "p0": zeros(k),
            "E": glorot(gen, n_models, k, n_models, k),
            "bq": zeros(n_models),
            "Fc": glorot(gen, n_models, k, n_models, k),
            "bc": zeros(n_models),
        }

    def _forward(self, params: dict, X: torch.Tensor, **kw: Any) -> dict[str, torch.Tensor]:
        h = first_layer(X, params["P"], params["p0"])  # (S, n, k)
        q_logit = readout(h, params["E"], params["bq"])
        c = readout(h, params["Fc"], params["bc"])
        return {"q_logit": q_logit, "c": c}

    def _target_tensors(self, targets: BatchedTargets) -> dict[str, torch.Tensor]:
        tgt = super()._target_tensors(targets)
        if "sigma" in tgt:
            tgt["q"] = (tgt["q"] - float(self.beta) * tgt["sigma"]).clamp(0.0, 1.0)
        return tgt

    def _loss(self, out: dict, tgt: dict, has_sigma: bool) -> torch.Tensor:
        bce = bce_with_logits(out["q_logit"], tgt["q"])
        mse = (out["c"] - tgt["c"]) ** 2
        return bce.mean(dim=(1, 2)) + mse.mean(dim=(1, 2))

    def _outputs_to_stats(self, out: dict) -> Stats:
        return Stats(
            q=torch.sigmoid(out["q_logit"]).numpy().astype("float64"),
            c=out["c"].numpy().astype("float64"),
            sigma=None,
            risk_beta=float(self.beta) if self.has_sigma_ else None,
        )
