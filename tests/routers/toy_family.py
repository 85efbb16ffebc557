"""A toy third-party router family, written the way another package would write one.

Not registered here: tests register it at test time (``register_router``) or through a
``dars.routers`` entry point of a throwaway distribution, as a plugin package would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dars.routers import Router, RouterTags, Stats


class BestFixedRouter(Router):
    """Routes every query to the model with the best mean training utility: its predicted q, c
    (and σ) are the training means per model, the same for every query."""

    tags = RouterTags()

    def __init__(self, *, shrink: float = 0.0, random_state: int | None = None) -> None:
        self.shrink = shrink
        self.random_state = random_state

    def _fit(self, X: np.ndarray, targets: Any) -> None:
        # ``shrink`` pulls every mean towards the grand mean (a hyperparameter to round-trip).
        def mean(a: np.ndarray) -> np.ndarray:
            m = a.mean(axis=0)
            return (1.0 - self.shrink) * m + self.shrink * m.mean()

        self.mean_q_ = mean(targets.q)
        self.mean_c_ = mean(targets.c)
        self.mean_sigma_ = None if targets.sigma is None else mean(targets.sigma)

    def _predict_stats(self, X: np.ndarray) -> Stats:
        n = X.shape[0]

        def tile(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.tile(a, (n, 1))

        return Stats(q=tile(self.mean_q_), c=tile(self.mean_c_), sigma=tile(self.mean_sigma_))

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"q": self.mean_q_, "c": self.mean_c_}
        if self.mean_sigma_ is not None:
            arrays["sigma"] = self.mean_sigma_
        return {}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mean_q_, self.mean_c_ = arrays["q"], arrays["c"]
        self.mean_sigma_ = arrays.get("sigma")
