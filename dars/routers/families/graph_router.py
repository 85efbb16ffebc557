"""GraphRouter-style router: a query–model edge predictor."""

from __future__ import annotations

from typing import Any

import torch

from dars.routers._torch import TorchRouter, bce_with_logits, first_layer, glorot, zeros
from dars.routers.base import RouterTags, Stats
from dars.routers.registry import register_router

__all__ = ["GraphRouter"]


@register_router("graph_router")
class GraphRouter(TorchRouter):
    """Edge predictor between query nodes and model nodes, in the spirit of GraphRouter.

    Query nodes are the embedding projected to ``embed_dim``; model nodes are learned embeddings
    of the same width. Each (query, model) edge gets features [q, m, q⊙m, |q−m|], passed through
    one hidden ReLU layer (``hidden``) to three edge outputs: quality logit (binary cross-entropy),
    cost (MSE) and σ (MSE, only under DARS targets; predicted σ is clipped at 0). GraphRouter's
    message passing over a transductive graph is replaced by this inductive edge scorer, since
    test queries are unseen nodes.

    Defaults (ours, sized for a few hundred queries): ``embed_dim=16``, ``hidden=64``,
    full-batch Adam ``lr=1e-2``, ``weight_decay=1e-3``, ``epochs=150`` (chosen on the
    synthetic task of dars.routers.synthetic at demo size: longer training fits single-shot
    noise and routes worse, and costs more).
    """

    tags = RouterTags(needs_torch=True)

    def __init__(
        self,
        *,
        embed_dim: int = 16,
        hidden: int = 64,
        epochs: int = 150,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        n_threads: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_positive_ints("embed_dim", "hidden")

    def _init_params(self, gen: torch.Generator, n_features: int, n_models: int) -> dict:
        k, h = int(self.embed_dim), int(self.hidden)
        return {
            "P": glorot(gen, n_features, k, n_features, k),
            "p0": zeros(k),
            "E": glorot(gen, n_models, k, n_models, k),
            "W1": glorot(gen, 4 * k, h, 4 * k, h),
            "b1": zeros(h),
            "W2": glorot(gen, h, 3, h, 3),
            "b2": zeros(3),
        }

    def _forward(self, params: dict, X: torch.Tensor, **kw: Any) -> dict[str, torch.Tensor]:
        hq = first_layer(X, params["P"], params["p0"])  # (S, n, k)
        S, n, k = hq.shape
        e = params["E"]  # (S, M, k)
        M = e.shape[1]
        hq4 = hq[:, :, None, :].expand(S, n, M, k)
        e4 = e[:, None, :, :].expand(S, n, M, k)
        edge = torch.cat([hq4, e4, hq4 * e4, (hq4 - e4).abs()], dim=-1).reshape(S, n * M, 4 * k)
        z = torch.relu(torch.baddbmm(params["b1"][:, None, :], edge, params["W1"]))
        out = torch.baddbmm(params["b2"][:, None, :], z, params["W2"]).reshape(S, n, M, 3)
        return {"q_logit": out[..., 0], "c": out[..., 1], "sigma": out[..., 2]}

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
