"""The router interface shared by the seven families.

A router maps query embeddings X (n_queries, n_features) to per-model predictions and routes each
query to the model with the highest predicted utility u = q − λc − βσ. Routers are scikit-learn
style estimators: the constructor only stores keyword-only hyperparameters (always including
``random_state``), ``fit`` validates its inputs, learns into attributes ending in ``_`` and returns
``self``; prediction on an unfitted router raises ``NotFittedError``; ``sklearn.base.clone`` and
``get_params``/``set_params`` work.

Training many draws of targets at once goes through ``fit_many``: the draws are independent (draw
s is seeded :func:`draw_seed` ``(seed, s)``: its own initialisation, clustering, shuffling), and
each family either batches them in one computation (shared neighbours, one torch model with a
leading draw axis) or falls back to fitting clones one at a time. Fitted routers save to a
directory as JSON hyperparameters plus arrays (``state.npz``, or ``state.pt`` holding only
tensors for torch families): no pickled objects, so loading never executes code and does not
depend on library versions of scikit-learn estimators.

What a family can do is declared, not guessed: every family class sets ``tags``
(:class:`RouterTags`), which the training helpers and ``fit_many`` read and
:func:`dars.routers.testing.check_router` holds against the family's behaviour.

This module must not import torch (a scikit-learn-only run never pays for it), nor the registry
(the registry imports this module; ``dars.routers.load_router`` dispatches on the saved family).
"""

from __future__ import annotations

import inspect
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from dars.presets import PRESETS
from dars.routers.targets import BatchedTargets, Targets
from dars.utility import DEFAULT_BETA, DEFAULT_LAM, utility

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_LAM",
    "NotFittedError",
    "PRESETS",
    "Router",
    "RouterTags",
    "Stats",
    "draw_seed",
    "predict_stats_many",
    "read_saved",
    "route_many",
]

FORMAT = "dars-router"
FORMAT_VERSION = 1


def draw_seed(seed: int, s: int) -> int:
    """The ``random_state`` of draw ``s`` of a ``fit_many`` seeded ``seed``: ``seed`` itself for
    draw 0 (so draw 0 equals a plain fit), else an independent stream,
    ``SeedSequence([seed, s])``'s first 32-bit word. Draws thus differ in initialisation (and
    clustering, shuffling) as the paper's "100 independently sampled single-shot routers" do."""
    if s == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(s)]).generate_state(1)[0])


@dataclass(frozen=True)
class RouterTags:
    """What a router family can do, declared on its class (``tags = RouterTags(...)``).

    ``predicts_stats``
        ``predict_stats`` returns q, c (and σ) per (query, model); False for families that score
        models directly (rm_softmax), whose ``predict_stats`` raises NotImplementedError.
    ``folds_beta``
        β is folded into the training targets (embedllm, rm_softmax): the family takes a
        ``beta`` hyperparameter, a router fitted with a spread only answers at that β, and a
        β sweep refits per β.
    ``lam_conditioned``
        λ is an input of the model (rm_softmax): the family takes a ``lam_grid`` hyperparameter,
        the λ values it trains on, and is asked for its routes once per λ.
    ``needs_torch``
        Fitting and loading import torch; the fitted state is saved as ``state.pt`` (tensors
        only) instead of ``state.npz``.
    ``batched_fit_exact``
        ``fit_many``'s batched path gives the routers independent fits would (bitwise, or
        within float tolerance for torch); False when it only approximates them (no built-in
        family; a plugin might), and ``fit_many(exact=True)`` then fits one draw at a time.
    """

    predicts_stats: bool = True
    folds_beta: bool = False
    lam_conditioned: bool = False
    needs_torch: bool = False
    batched_fit_exact: bool = True

    @property
    def routes_by_stats(self) -> bool:
        """Utilities are ``Stats.utility(λ, β)`` of λ-free predicted statistics, so batched
        routing and λ sweeps may predict the statistics once and re-weight them."""
        return self.predicts_stats and not self.lam_conditioned


@dataclass(frozen=True)
class Stats:
    """Predicted per-(query, model) statistics, arrays of shape (n_queries, n_models).

    Batched helpers return the same fields with a leading draw axis (S, n_queries, n_models).
    ``q`` is predicted mean quality, ``c`` predicted normalised cost, ``sigma`` predicted quality
    spread (None when the router was trained without spread or the family does not model it).
    ``risk_beta`` is set when ``q`` already has the risk term −βσ folded in at training time (the
    DARS target of embedllm); utilities are then only defined for that β.
    """

    q: np.ndarray
    c: np.ndarray
    sigma: np.ndarray | None = None
    risk_beta: float | None = None

    def utility(self, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA) -> np.ndarray:
        """u = q − λc − βσ; the σ term is absent when sigma is None."""
        _check_weight("lam", lam)
        _check_weight("beta", beta)
        if self.risk_beta is not None and not math.isclose(beta, self.risk_beta):
            raise ValueError(
                f"this router folded beta={self.risk_beta} into its quality target at fit time; "
                f"utility for beta={beta} is undefined (refit with beta={beta})"
            )
        return utility(self.q, self.c, self.sigma, lam=lam, beta=beta)


def _check_weight(name: str, value: float) -> None:
    if not isinstance(value, int | float | np.floating) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_X(X: Any, *, n_features: int | None = None, what: str = "X") -> np.ndarray:
    """Validate query embeddings: a finite 2-D float array, optionally with a known width."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a numeric array: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n_queries, n_features), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise ValueError(f"{what} has a non-finite value in row {row}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{what} has {arr.shape[1]} features but the router was fitted on {n_features}"
        )
    return arr


def _check_pair(X: np.ndarray, targets: Targets | BatchedTargets) -> None:
    if targets.n_queries != X.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} queries but targets have {targets.n_queries}; "
            "rows must be the same queries in the same order"
        )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Router(BaseEstimator, ABC):
    """Base class of every router family.

    Subclasses implement ``_fit`` (learn from validated arrays), ``_predict_stats`` and
    ``_get_state``/``_set_state`` (arrays plus JSON-able metadata); they may implement
    ``_fit_batched`` to train many draws at once and ``_predict_stats_many`` to predict for many
    fitted routers at once.

    Common fitted attributes: ``n_features_in_``, ``n_models_``, ``models_`` (model names, or
    ``m0``, ``m1``, … when targets had none) and ``has_sigma_`` (targets carried a spread).
    """

    #: The registered family name (set by ``register_router``; saved in ``router.json``).
    name: ClassVar[str] = ""
    #: What the family can do; every family declares its own (see :class:`RouterTags`).
    tags: ClassVar[RouterTags] = RouterTags()
    #: Named hyperparameter sets besides the constructor defaults (preset ``tuned``): e.g.
    #: ``{"paper": {...}}``, the DARS authors' architecture and training budget, each value's
    #: source in the family's docstring. Applied by ``make_router(family, preset=...)``.
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    # ----------------------------------------------------------------------------- fitting
    def fit(self, X: Any, targets: Targets) -> Self:
        """Learn from embeddings X (n_queries, n_features) and targets for the same queries."""
        if not isinstance(targets, Targets):
            raise TypeError(
                f"targets must be a dars.routers.Targets, got {type(targets).__name__}; "
                "use fit_many for BatchedTargets"
            )
        X = check_X(X)
        _check_pair(X, targets)
        self._validate_params()
        with self._fit_threads():
            self._fit(X, targets)
        self._finish_fit(X.shape[1], targets)
        return self

    def fit_many(
        self,
        X: Any,
        targets: BatchedTargets,
        *,
        exact: bool = False,
        chunk_size: int | None = None,
        seeds: Literal["independent", "shared"] = "independent",
    ) -> list[Router]:
        """Fit one router per draw of ``targets`` (S, n, M); returns S fitted clones of ``self``.

        Draws are independent: router s has ``random_state = draw_seed(seed, s)`` (``seed``:
        ``self.random_state``, or fresh entropy when None) and equals
        ``clone(self).set_params(random_state=draw_seed(seed, s)).fit(X, targets.draw(s))``:
        exactly for knn and avengers_pro, within float tolerance for the torch families, mlp
        included (bitwise on the machines we measured, see dars.routers._torch).
        ``seeds="shared"`` seeds every draw with ``seed`` instead (router s equals
        ``clone(self).fit(X, targets.draw(s))``): for draws that are variants of one training
        set (the sample-efficiency protocols) rather than independent samples.
        ``exact=True`` asks for routers equal to independent fits: families whose batched path
        is approximate (``tags.batched_fit_exact`` False) then fit one draw at a time, the
        others still batch.
        ``chunk_size`` bounds how many draws are trained together (torch
        families default to 16, which suits CPU caches); it does not change results. ``self``
        stays unfitted.
        """
        if not isinstance(targets, BatchedTargets):
            raise TypeError(
                f"fit_many needs dars.routers.BatchedTargets, got {type(targets).__name__}"
            )
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        X = check_X(X)
        _check_pair(X, targets)
        self._validate_params()
        if seeds not in ("independent", "shared"):
            raise ValueError(f"seeds must be 'independent' or 'shared', got {seeds!r}")
        seed = self._seed()
        per_draw = [
            seed if seeds == "shared" else draw_seed(seed, s) for s in range(targets.n_draws)
        ]
        no_batch = type(self)._fit_batched is Router._fit_batched
        if no_batch or (exact and not self.tags.batched_fit_exact):
            return [
                clone(self).set_params(random_state=per_draw[s]).fit(X, targets.draw(s))
                for s in range(targets.n_draws)
            ]
        with self._fit_threads():
            routers = self._fit_batched(X, targets, chunk_size, per_draw)
        if len(routers) != targets.n_draws:
            raise RuntimeError(
                f"{type(self).__name__}._fit_batched returned {len(routers)} routers for "
                f"{targets.n_draws} draws"
            )
        for r, s in zip(routers, per_draw, strict=True):
            r.set_params(random_state=s)
            r._finish_fit(X.shape[1], targets)
        return routers

    def _finish_fit(self, n_features: int, targets: Targets | BatchedTargets) -> None:
        self.n_features_in_ = int(n_features)
        self.models_ = targets.models or tuple(f"m{j}" for j in range(targets.n_models))
        self.has_sigma_ = targets.sigma is not None
        # Set last: its presence is what marks the router as fitted.
        self.n_models_ = int(targets.n_models)

    def _fit_threads(self) -> AbstractContextManager[Any]:
        """Context for fitting: numpy/scikit-learn BLAS and OpenMP pools limited to one thread.

        The matrices are small (hundreds of rows), parallelism comes from running several
        training tasks side by side, and oversubscribed BLAS threads spin: on a shared 2-core
        machine one MLPRegressor fit took 28 s with two OpenBLAS threads and 1.9 s with one.
        Torch families override this (they set torch's own thread count).
        """
        return threadpool_limits(limits=1)

    def _validate_params(self) -> None:
        """Check hyperparameters; families extend this (called at the start of fit)."""
        rs = self.random_state
        if rs is not None and (
            isinstance(rs, bool) or not isinstance(rs, int | np.integer) or not 0 <= rs < 2**32
        ):
            raise ValueError(
                f"{type(self).__name__}: random_state must be an int in [0, 2**32) or None "
                f"(it seeds torch and is saved as JSON), got {rs!r}"
            )

    def _check_positive_ints(self, *names: str) -> None:
        """Raise naming the family and the parameter unless each of ``names`` is an int >= 1
        (bools are rejected: ``True`` is an int subclass and never a meant size)."""
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{self.name}: {name} must be an int >= 1, got {v!r}")

    def _seed(self) -> int:
        """The integer seed for this fit: random_state, or fresh entropy when it is None."""
        if self.random_state is None:
            return int(np.random.SeedSequence().generate_state(1)[0])
        return int(self.random_state)

    @abstractmethod
    def _fit(self, X: np.ndarray, targets: Targets) -> None: ...

    def _fit_batched(
        self, X: np.ndarray, targets: BatchedTargets, chunk_size: int | None, seeds: list[int]
    ) -> list[Router]:
        """Routers for every draw of ``targets``, draw s fitted as with ``random_state =
        seeds[s]`` (``fit_many`` sets that parameter on the routers returned)."""
        raise NotImplementedError  # sentinel: fit_many falls back to the sequential loop

    # --------------------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_models_"):
            raise NotFittedError(
                f"This {type(self).__name__} (router {self.name!r}) is not fitted yet; "
                "call fit(X, targets) or fit_many(X, batched_targets) first"
            )

    def predict_stats(self, X: Any) -> Stats:
        """Predicted q, c and σ per (query, model), each (n_queries, n_models)."""
        self._check_fitted()
        if not self.tags.predicts_stats:
            raise NotImplementedError(
                f"router {self.name!r} scores models directly and does not predict q/c/σ; "
                "use predict_utility or route"
            )
        X = check_X(X, n_features=self.n_features_in_)
        return self._predict_stats(X)

    def _predict_stats(self, X: np.ndarray) -> Stats:
        raise NotImplementedError

    def predict_utility(
        self, X: Any, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA
    ) -> np.ndarray:
        """Predicted utility u = q − λc − βσ per (query, model), shape (n_queries, n_models).

        Without a predicted σ (trained on single-shot targets) the risk term is absent.
        """
        return self.predict_stats(X).utility(lam, beta)

    def route(self, X: Any, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA) -> np.ndarray:
        """Index (into ``models_``) of the chosen model per query, shape (n_queries,), int64.

        Ties go to the lowest model index.
        """
        return np.argmax(self.predict_utility(X, lam, beta), axis=1).astype(np.int64)

    @classmethod
    def _predict_stats_many(cls, routers: Sequence[Router], X: np.ndarray) -> Stats:
        stats = [r._predict_stats(X) for r in routers]
        return _stack_stats(stats)

    @classmethod
    def _route_many(
        cls, routers: Sequence[Router], X: np.ndarray, lams: Sequence[float], beta: float
    ) -> np.ndarray:
        """Routes of ``routers`` (one family) at every λ of ``lams``: int64 (len(lams), S, n);
        entry [l, s] must equal ``routers[s].route(X, lams[l], beta)``. Used for families that
        do not route by λ-free statistics; a family may batch it (rm_softmax does)."""
        return np.stack([np.stack([r.route(X, lam, beta) for r in routers]) for lam in lams])

    # ------------------------------------------------------------------------- persistence
    @abstractmethod
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able metadata, named numpy arrays) that fully describe the fitted router."""

    @abstractmethod
    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None: ...

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted router into directory ``path`` (created if needed); returns it.

        Files: ``router.json`` (family, hyperparameters, fitted metadata) and ``state.npz`` or
        ``state.pt``. The caller (dars.storage) chooses the directory.
        """
        self._check_fitted()
        if not self.name:
            # The saved family name is how a router is found again when loaded.
            raise TypeError(
                f"{type(self).__name__} is not a registered router family; register it with "
                "@dars.routers.register_router(name) or a 'dars.routers' entry point to save it"
            )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta, arrays = self._get_state()
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "family": self.name,
            "params": self.get_params(deep=False),
            "fitted": {
                "n_features_in_": self.n_features_in_,
                "n_models_": self.n_models_,
                "models_": list(self.models_),
                "has_sigma_": self.has_sigma_,
                "family": meta,
            },
        }
        try:
            text = json.dumps(doc, indent=2, sort_keys=True)
        except TypeError as exc:
            raise TypeError(
                f"router {self.name!r} hyperparameters are not JSON-able: {exc}"
            ) from exc
        self._write_arrays(path, arrays)
        _write_atomic(path / "router.json", text.encode())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a router of this family written by ``save``.

        ``dars.routers.load_router(path)`` reads a router of any family (it looks the saved
        family up in the registry); this method is for callers that know the family, and
        rejects a directory holding another one.
        """
        path = Path(path)
        doc = read_saved(path)
        if not cls.name or doc["family"] != cls.name:
            what = f"a {cls.name!r} router ({cls.__name__})" if cls.name else cls.__name__
            raise TypeError(
                f"{path / 'router.json'} holds a {doc['family']!r} router, not {what}; "
                "dars.routers.load_router loads a router of any family"
            )
        router = cls(**_restore_params(cls, doc["params"]))
        fitted = doc["fitted"]
        router._set_state(fitted["family"], cls._read_arrays(path))
        router.n_features_in_ = int(fitted["n_features_in_"])
        router.models_ = tuple(fitted["models_"])
        router.has_sigma_ = bool(fitted["has_sigma_"])
        router.n_models_ = int(fitted["n_models_"])
        return router

    def _write_arrays(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        tmp = path / ".state.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path / "state.npz")

    @classmethod
    def _read_arrays(cls, path: Path) -> dict[str, np.ndarray]:
        with np.load(path / "state.npz", allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def read_saved(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``router.json`` document of a router saved in directory ``path`` (format checked):
    ``family`` (registered name), ``params`` (hyperparameters) and ``fitted`` (metadata)."""
    doc_path = Path(path) / "router.json"
    if not doc_path.is_file():
        raise FileNotFoundError(f"no router.json in {path}")
    doc = json.loads(doc_path.read_text())
    if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{doc_path}: format {doc.get('format')!r} version {doc.get('version')!r}, "
            f"expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    return doc


def _restore_params(klass: type[Router], params: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; give tuple-valued hyperparameters their tuple back."""
    sig = inspect.signature(klass.__init__)
    out = {}
    for key, value in params.items():
        if key not in sig.parameters:
            raise ValueError(f"saved hyperparameter {key!r} is unknown to {klass.__name__}")
        default = sig.parameters[key].default
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def _stack_stats(stats: Sequence[Stats]) -> Stats:
    sig = {s.sigma is None for s in stats}
    beta = {s.risk_beta for s in stats}
    if len(sig) != 1 or len(beta) != 1:
        raise ValueError("cannot stack predictions of routers trained on different target kinds")
    return Stats(
        q=np.stack([s.q for s in stats]),
        c=np.stack([s.c for s in stats]),
        sigma=None if stats[0].sigma is None else np.stack([s.sigma for s in stats]),
        risk_beta=stats[0].risk_beta,
    )


def _check_same_family(routers: Sequence[Router]) -> type[Router]:
    if not routers:
        raise ValueError("need at least one router")
    kinds = {type(r) for r in routers}
    if len(kinds) != 1:
        raise ValueError(f"routers must be of one family, got {sorted(k.__name__ for k in kinds)}")
    n_features = {r.n_features_in_ for r in routers if hasattr(r, "n_features_in_")}
    for r in routers:
        r._check_fitted()
    if len(n_features) != 1:
        raise ValueError(f"routers were fitted on different feature widths: {sorted(n_features)}")
    return kinds.pop()


def predict_stats_many(routers: Sequence[Router], X: Any) -> Stats:
    """Predictions of many fitted routers of one family: Stats with (S, n_queries, n_models).

    Families whose routers share structure (one neighbour index, one set of centroids, one torch
    architecture) compute it once for all S.
    """
    klass = _check_same_family(routers)
    if not klass.tags.predicts_stats:
        raise NotImplementedError(f"router {klass.name!r} does not predict q/c/σ")
    X = check_X(X, n_features=routers[0].n_features_in_)
    return klass._predict_stats_many(routers, X)


def route_many(
    routers: Sequence[Router], X: Any, lam: float = DEFAULT_LAM, beta: float = DEFAULT_BETA
) -> np.ndarray:
    """Routes of many fitted routers of one family: int64 array (S, n_queries)."""
    klass = _check_same_family(routers)
    if not klass.tags.routes_by_stats:
        X = check_X(X, n_features=routers[0].n_features_in_)
        return klass._route_many(routers, X, [lam], beta)[0]
    stats = predict_stats_many(routers, X)
    return np.argmax(stats.utility(lam, beta), axis=-1).astype(np.int64)
