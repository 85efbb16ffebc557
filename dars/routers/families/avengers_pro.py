"""Avengers-Pro style router: cluster the queries, keep per-cluster model statistics."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.cluster import KMeans

from dars.routers.base import Router, RouterTags, Stats
from dars.routers.registry import register_router
from dars.routers.targets import BatchedTargets, Targets

__all__ = ["AvengersProRouter"]


def _l2_normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    # An all-zero embedding stays zero rather than becoming NaN.
    return X / np.where(norms > 0, norms, 1.0)


def _fields(targets: Targets | BatchedTargets) -> np.ndarray:
    fields = [targets.q, targets.c] + ([targets.sigma] if targets.sigma is not None else [])
    arr = np.stack(fields, axis=-1)
    return arr[None] if arr.ndim == 3 else arr  # (S, n, M, F)


@register_router("avengers_pro")
class AvengersProRouter(Router):
    """KMeans clusters of L2-normalised embeddings with per-cluster mean q, c, σ per model.

    A query's statistics are the unweighted mean of the statistics of its ``top_k`` nearest
    centroids; it is routed by the resulting utility. Defaults from the DARS authors' code:
    ``n_clusters=32``, ``n_init=10``, ``top_k=3``. With fewer training queries than clusters, the
    number of clusters drops to the number of queries.

    Fitted attributes: ``centroids_`` (K, n_features) in normalised space, ``cluster_stats_``
    (K, M, F) with F = (q, c[, σ]), ``cluster_sizes_`` (K,), ``labels_`` (n_train,).
    """

    tags = RouterTags()

    def __init__(
        self,
        *,
        n_clusters: int = 32,
        n_init: int = 10,
        top_k: int = 3,
        random_state: int | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.top_k = top_k
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_positive_ints("n_clusters", "n_init", "top_k")

    def _cluster(self, X: np.ndarray) -> None:
        Xn = _l2_normalise(X)
        k = min(int(self.n_clusters), Xn.shape[0])
        km = KMeans(n_clusters=k, n_init=int(self.n_init), random_state=self._seed())
        with warnings.catch_warnings():
            # Duplicate embeddings can leave fewer distinct points than clusters; KMeans then
            # warns and still returns k clusters (some empty), which the statistics handle.
            warnings.simplefilter("ignore", category=UserWarning)
            self.labels_ = km.fit_predict(Xn).astype(np.int64)
        self.centroids_ = km.cluster_centers_
        self.cluster_sizes_ = np.bincount(self.labels_, minlength=k).astype(np.int64)

    def _mean_operator(self) -> np.ndarray:
        """(K, n_train) matrix whose row k averages the training queries of cluster k."""
        k = self.centroids_.shape[0]
        onehot = np.zeros((k, self.labels_.shape[0]))
        onehot[self.labels_, np.arange(self.labels_.shape[0])] = 1.0
        return onehot / np.maximum(self.cluster_sizes_, 1)[:, None]

    def _fit(self, X: np.ndarray, targets: Targets) -> None:
        self._cluster(X)
        self.cluster_stats_ = np.einsum("kn,snmf->skmf", self._mean_operator(), _fields(targets))[0]

    def _fit_batched(
        self, X: np.ndarray, targets: BatchedTargets, chunk_size: int | None, seeds: list[int]
    ) -> list[Router]:
        # Clusters depend on X and the seed only: one k-means per distinct seed (independent
        # draws each have their own), then each draw's statistics from its clustering.
        fields = _fields(targets)
        clusterings: dict[int, AvengersProRouter] = {}
        routers = []
        for s, seed in enumerate(seeds):
            if seed not in clusterings:
                clusterings[seed] = clone(self).set_params(random_state=seed)
                clusterings[seed]._cluster(X)
            fit = clusterings[seed]
            r = clone(self)
            r.labels_ = fit.labels_
            r.centroids_ = fit.centroids_
            r.cluster_sizes_ = fit.cluster_sizes_
            r.cluster_stats_ = np.einsum("kn,snmf->skmf", fit._mean_operator(), fields[s : s + 1])[
                0
            ]
            routers.append(r)
        return routers

    def _nearest(self, X: np.ndarray) -> np.ndarray:
        """Indices (n, top_k) of the nearest non-empty centroids of each normalised query."""
        Xn = _l2_normalise(X)
        d2 = (
            (Xn**2).sum(1)[:, None]
            - 2.0 * Xn @ self.centroids_.T
            + (self.centroids_**2).sum(1)[None, :]
        )
        d2[:, self.cluster_sizes_ == 0] = np.inf
        top = min(int(self.top_k), int((self.cluster_sizes_ > 0).sum()))
        # Stable sort: equal distances resolve to the lower cluster index, deterministically.
        return np.argsort(d2, axis=1, kind="stable")[:, :top]

    @staticmethod
    def _aggregate(routers: Sequence[AvengersProRouter], X: np.ndarray) -> np.ndarray:
        near = routers[0]._nearest(X)
        stats = np.stack([r.cluster_stats_ for r in routers])  # (S, K, M, F)
        return stats[:, near].mean(axis=2)  # (S, n, M, F)

    def _predict_stats(self, X: np.ndarray) -> Stats:
        return _to_stats(self._aggregate([self], X)[0])

    @classmethod
    def _predict_stats_many(cls, routers: Sequence[Router], X: np.ndarray) -> Stats:
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(routers):
            groups.setdefault(id(r.centroids_), []).append(i)
        out: np.ndarray | None = None
        for members in groups.values():
            agg = cls._aggregate([routers[i] for i in members], X)
            if out is None:
                out = np.empty((len(routers), *agg.shape[1:]))
            out[members] = agg
        return _to_stats(out)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            "centroids": self.centroids_,
            "cluster_stats": self.cluster_stats_,
            "cluster_sizes": self.cluster_sizes_,
            "labels": self.labels_,
        }
        return {}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.centroids_ = arrays["centroids"]
        self.cluster_stats_ = arrays["cluster_stats"]
        self.cluster_sizes_ = arrays["cluster_sizes"]
        self.labels_ = arrays["labels"]


def _to_stats(agg: np.ndarray) -> Stats:
    return Stats(q=agg[..., 0], c=agg[..., 1], sigma=agg[..., 2] if agg.shape[-1] == 3 else None)
