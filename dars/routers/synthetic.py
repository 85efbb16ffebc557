"""Seeded synthetic routing problems with a known best model, for tests, benches and demos.

Queries live near a 3-dimensional latent space embedded in ``n_features`` dimensions (rows are
L2-normalised, like sentence embeddings). Model m succeeds with probability 0.85 where the m-th
of ``n_models`` random linear scores of the latent is the largest, and 0.25 elsewhere; costs rise
with the model index. So the best model is a smooth function of the embedding and a good router
should approach the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dars.routers.targets import BatchedTargets, Targets
from dars.utility import DEFAULT_BETA, DEFAULT_LAM, utility

__all__ = ["SyntheticTask", "make_synthetic_task"]

P_STRONG = 0.85
P_WEAK = 0.25


@dataclass(frozen=True)
class SyntheticTask:
    """Train/test embeddings with true per-(query, model) success probability, cost and spread.

    ``targets`` are DARS-style training targets: the mean and ddof=1 std of ``n_obs`` Bernoulli
    outcomes per (train query, model), with the true cost.
    """

    X_train: np.ndarray  # (n_train, n_features)
    X_test: np.ndarray  # (n_test, n_features)
    targets: Targets
    p_train: np.ndarray  # (n_train, M) true success probability
    c_train: np.ndarray  # (n_train, M) true normalised cost
    p_test: np.ndarray  # (n_test, M)
    c_test: np.ndarray
    sigma_test: np.ndarray  # (n_test, M) true outcome std, sqrt(p(1-p))

    @property
    def models(self) -> tuple[str, ...]:
        assert self.targets.models is not None
        return self.targets.models

    def true_utility(self, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA) -> np.ndarray:
        """(n_test, M) true u = p − λc − βσ."""
        return utility(self.p_test, self.c_test, self.sigma_test, lam=lam, beta=beta)

    def value(
        self, routes: np.ndarray, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA
    ) -> float:
        """Mean true utility of routing test query i to model ``routes[i]``."""
        u = self.true_utility(lam, beta)
        return float(u[np.arange(len(routes)), routes].mean())

    def oracle_value(self, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA) -> float:
        return float(self.true_utility(lam, beta).max(axis=1).mean())

    def random_value(self, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA) -> float:
        """Expected value of routing uniformly at random."""
        return float(self.true_utility(lam, beta).mean())

    def single_shot(self, n_draws: int, seed: int = 1) -> BatchedTargets:
        """``n_draws`` single-shot target sets: one Bernoulli outcome per (train query, model)
        and a noisy cost (sd 0.05, clipped to [0, 1]); no sigma."""
        rng = np.random.default_rng(seed)
        shape = (n_draws, *self.p_train.shape)
        q = (rng.random(shape) < self.p_train).astype(np.float64)
        c = np.clip(self.c_train + rng.normal(0.0, 0.05, shape), 0.0, 1.0)
        return BatchedTargets(q=q, c=c, models=self.models)


def make_synthetic_task(
    *,
    n_train: int = 200,
    n_test: int = 200,
    n_features: int = 24,
    n_models: int = 4,
    n_obs: int = 25,
    seed: int = 0,
) -> SyntheticTask:
    """Build a ``SyntheticTask`` (see the module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, n_features))
    B = rng.normal(size=(3, n_models))
    base_cost = np.linspace(0.1, 0.7, n_models)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = rng.normal(size=(n, 3))
        X = z @ A + 0.1 * rng.normal(size=(n, n_features))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        p = np.full((n, n_models), P_WEAK)
        p[np.arange(n), np.argmax(z @ B, axis=1)] = P_STRONG
        c = np.clip(base_cost + rng.normal(0.0, 0.02, (n, n_models)), 0.0, 1.0)
        return X, p, c

    X_tr, p_tr, c_tr = sample(n_train)
    X_te, p_te, c_te = sample(n_test)
    obs = rng.random((n_obs, *p_tr.shape)) < p_tr
    targets = Targets(
        q=obs.mean(axis=0),
        c=c_tr,
        sigma=obs.std(axis=0, ddof=1),
        models=tuple(f"model_{j}" for j in range(n_models)),
    )
    return SyntheticTask(
        X_train=X_tr,
        X_test=X_te,
        targets=targets,
        p_train=p_tr,
        c_train=c_tr,
        p_test=p_te,
        c_test=c_te,
        sigma_test=np.sqrt(p_te * (1.0 - p_te)),
    )
