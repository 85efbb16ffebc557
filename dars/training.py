"""The train stage: supervision tables + query embeddings → fitted routers and their test routes.

For one (dataset, router family, mode) :func:`train_router` reads the dataset's supervision
(written by :mod:`dars.supervision.stage`), embeds the queries (:func:`embed_queries`), fits the
router and writes, under ``RunLayout(root).model_dir(dataset, family, mode)``:

* the fitted router (``Router.save``: ``router.json`` + ``state.npz``/``state.pt``). For
  ``single_shot`` only the router of draw 0 is saved: S draws × 7 families × datasets of saved
  routers would be mostly redundant bytes, and the evaluation needs their routes, not the models.
* ``routes.parquet`` (:func:`routes_frame`): where the router sends every **test** query at the
  experiment's λ and β. One row per (draw, query_id): ``draw`` (int32; the single-shot draw, 0
  for every other mode), ``query_id`` (str), ``model`` (pool name) and ``model_index`` (int32,
  index into the pool order). Single-shot dirs hold S × n_test rows, the others n_test. Rows are
  ordered by draw, then test split order.
* ``lam_routes.parquet`` (:func:`lam_routes_frame`, modes ``single_shot`` and ``dars`` only —
  the Pareto experiment's inputs): the same routes at every λ of
  ``experiment.evaluation.lam_grid`` (β = the experiment's β). One row per (lam, draw,
  query_id) with columns ``lam`` (float64) then those of ``routes.parquet``; rows ordered by
  lam (grid order), draw, test split order. Routing at another λ needs no refit: families that
  predict q, c and σ are evaluated once (``predict_stats_many``) and only the argmax of
  u = q − λc − βσ changes; rm_softmax, conditioned on λ, is asked per λ.

Modes (:data:`VALID_MODES`):

``single_shot``
    ``single_shot_draws`` targets (one observed score and cost per cell and draw, no spread),
    one router per draw trained together with ``Router.fit_many``.
``dars``
    The ``dars`` table: q = μ, c = c̄, σ = q_std.
an ablation variant (``input_only``, ``output_only``, ``without_risk``, ``rewrite_risk``,
``decoding_risk``, ``full_dars``)
    That variant's rows of the ``variants`` table, with σ = q_std except ``without_risk``
    (trained without a spread: its point is β = 0).

Training rows are the dataset's train queries in split order that appear in the supervision
(queries with a failed cell are dropped by the supervise stage). Routers are built with
``random_state = experiment.seed`` and, for families that fold β into training (embedllm,
rm_softmax), ``beta = experiment.beta``, so routes at the experiment's β are defined.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from dars.benchmarks.loading import load_benchmark_splits
from dars.config import Experiment
from dars.routers import (
    BatchedTargets,
    Router,
    Targets,
    available_routers,
    batched_targets_from_frame,
    make_router,
    predict_stats_many,
    route_many,
    targets_from_frame,
)
from dars.routers.encoders import (
    EmbeddingCache,
    QueryEncoder,
    TfidfEncoder,
    item_text,
    make_encoder,
)
from dars.storage import RunLayout, atomic_write_table
from dars.storage.supervision_store import read_supervision
from dars.supervision.ablations import VARIANTS

__all__ = [
    "ABLATION_MODES",
    "DEFAULT_MODES",
    "LAM_ROUTES_SCHEMA",
    "LAM_SWEEP_MODES",
    "ROUTES_SCHEMA",
    "VALID_MODES",
    "Embeddings",
    "check_families",
    "check_modes",
    "embed_queries",
    "folds_beta",
    "lam_routes_frame",
    "new_router",
    "route_lam_grid",
    "routes_frame",
    "train_router",
    "training_targets",
]

#: The five Table-2 ablations (``full_dars`` equals ``dars`` and is not trained by default).
ABLATION_MODES: tuple[str, ...] = tuple(v for v in VARIANTS if v != "full_dars")
DEFAULT_MODES: tuple[str, ...] = ("single_shot", "dars", *ABLATION_MODES)
VALID_MODES: tuple[str, ...] = ("single_shot", "dars", *VARIANTS)
#: Modes whose test routes are also written at every λ of the Pareto sweep.
LAM_SWEEP_MODES: tuple[str, ...] = ("single_shot", "dars")
#: Columns of ``routes.parquet`` (see the module docstring).
ROUTES_SCHEMA = pa.schema(
    [
        pa.field("draw", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("model_index", pa.int32(), nullable=False),
    ]
)
#: Columns of ``lam_routes.parquet``: the sweep's λ, then :data:`ROUTES_SCHEMA`.
LAM_ROUTES_SCHEMA = pa.schema([pa.field("lam", pa.float64(), nullable=False), *ROUTES_SCHEMA])

Embeddings = tuple[list[str], np.ndarray, list[str], np.ndarray, str]


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def check_families(families: Sequence[str]) -> list[str]:
    """``families`` as a list, or ValueError naming unknown ones and listing the valid ones."""
    valid = available_routers()
    unknown = [f for f in families if f not in valid]
    if unknown:
        raise ValueError(f"unknown router famil(ies) {unknown}; valid: {', '.join(valid)}")
    if not families:
        raise ValueError(f"no router family given; valid: {', '.join(valid)}")
    return list(families)


def check_modes(modes: Sequence[str]) -> list[str]:
    """``modes`` as a list, or ValueError naming unknown ones and listing the valid ones."""
    unknown = [m for m in modes if m not in VALID_MODES]
    if unknown:
        raise ValueError(f"unknown training mode(s) {unknown}; valid: {', '.join(VALID_MODES)}")
    if not modes:
        raise ValueError(f"no training mode given; valid: {', '.join(VALID_MODES)}")
    return list(modes)


# ------------------------------------------------------------------------------------------------
# embeddings
# ------------------------------------------------------------------------------------------------
# Loading a sentence encoder costs seconds and memory, and every training task of a dataset
# needs the same embeddings: one encoder per configured name (and TF-IDF fit per training corpus)
# per process, and one lock per embeddings file so concurrent tasks do not race on it.
_ENCODERS: dict[Any, QueryEncoder] = {}
_ENCODER_LOCK = threading.Lock()
_FILE_LOCKS: dict[Path, threading.Lock] = {}
_FILE_LOCKS_LOCK = threading.Lock()


def _encoder(name: str, train_texts: Sequence[str]) -> QueryEncoder:
    """The configured encoder, loaded once per process; a TF-IDF encoder (asked for, or the
    fallback) is fitted on ``train_texts`` and memoised per corpus."""
    with _ENCODER_LOCK:
        base = _ENCODERS.get(name)
        if base is None:
            base = _ENCODERS[name] = make_encoder(name)
        if not isinstance(base, TfidfEncoder):
            return base
        corpus = hashlib.sha256("\0".join(train_texts).encode("utf-8")).hexdigest()
        key = (name, corpus)
        enc = _ENCODERS.get(key)
        if enc is None:
            enc = TfidfEncoder().fit(train_texts)
            enc.fallback_reason = base.fallback_reason
            _ENCODERS[key] = enc
        return enc


def _file_lock(path: Path) -> threading.Lock:
    with _FILE_LOCKS_LOCK:
        return _FILE_LOCKS.setdefault(path.resolve(), threading.Lock())


def embed_queries(exp: Experiment, root: str | Path, dataset: str) -> Embeddings:
    """Embeddings of ``dataset``'s train and test queries, cached under ``root``.

    Returns ``(train_ids, X_train, test_ids, X_test, encoder_name)``: ids in split order, X as
    float32 arrays with one row per id, and the name of the embedding space (e.g.
    ``st:all-MiniLM-L6-v2``, or ``tfidf:<digest>`` when TF-IDF was configured or the sentence
    encoder could not load). Texts are :func:`~dars.routers.encoders.item_text`. Embeddings are
    kept in ``RunLayout(root).embeddings_file(exp.encoder, dataset, split)``, so a rerun
    encodes nothing (``EmbeddingCache.last_encoded`` is then 0).
    """
    splits = load_benchmark_splits(exp.benchmark(dataset), exp.seed)
    layout = RunLayout(root)
    texts = {s: [item_text(it) for it in splits[s]] for s in ("train", "test")}
    ids = {s: [it.query_id for it in splits[s]] for s in ("train", "test")}
    for split in ("train", "test"):
        if not texts[split]:
            raise ValueError(f"dataset {dataset!r} has no {split} queries (check n_{split})")
    encoder = _encoder(exp.encoder, texts["train"])
    X = {}
    for split in ("train", "test"):
        path = layout.embeddings_file(exp.encoder, dataset, split)
        with _file_lock(path):
            X[split] = EmbeddingCache(path).embed(encoder, texts[split])
    return ids["train"], X["train"], ids["test"], X["test"], encoder.name


# ------------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------------
def _supervision_frame(root: str | Path, dataset: str, mode: str) -> pl.DataFrame:
    if mode == "single_shot":
        return read_supervision(root, dataset, "single_shot_draws")
    if mode == "dars":
        return read_supervision(root, dataset, "dars")
    variants = read_supervision(root, dataset, "variants")
    frame = variants.filter(pl.col("variant") == mode)
    if frame.height == 0:
        have = sorted(variants["variant"].unique().to_list())
        raise ValueError(
            f"supervision table 'variants' of dataset {dataset!r} has no rows for variant "
            f"{mode!r} (variants present: {have}); rerun `dars supervise`"
        )
    return frame.drop("variant")


def training_targets(
    frame: pl.DataFrame, mode: str, train_ids: Sequence[str], models: Sequence[str]
) -> tuple[list[int], Targets | BatchedTargets]:
    """Rows of the training set and their targets for ``mode`` (pure).

    ``frame``: the mode's supervision rows of one dataset (``single_shot_draws`` rows for
    ``single_shot``; ``dars`` or one variant's rows otherwise). Returns the positions in
    ``train_ids`` of the queries the frame covers (split order kept) and the targets for those
    queries × ``models`` (pool order): ``BatchedTargets`` over the sorted draws for
    ``single_shot``, ``Targets`` otherwise (σ = ``q_std``, none for ``without_risk``). A frame
    naming queries outside ``train_ids`` (supervision of another split or config) raises.
    """
    check_modes([mode])
    present = set(frame["query_id"].unique().to_list())
    known = set(train_ids)
    extra = sorted(present - known)
    if extra:
        raise ValueError(
            f"supervision for mode {mode!r} has {len(extra)} queries that are not in the train "
            f"split (e.g. {extra[:3]}); was it produced with another config or seed?"
        )
    rows = [i for i, q in enumerate(train_ids) if q in present]
    if not rows:
        raise ValueError(f"supervision for mode {mode!r} covers no train query")
    qids = [train_ids[i] for i in rows]
    if mode == "single_shot":
        return rows, batched_targets_from_frame(frame, qids, models)
    sigma_col = None if mode == "without_risk" else "q_std"
    return rows, targets_from_frame(frame, qids, models, sigma_col=sigma_col)


# ------------------------------------------------------------------------------------------------
# routes
# ------------------------------------------------------------------------------------------------
def routes_frame(routes: np.ndarray, query_ids: Sequence[str], models: Sequence[str]) -> pa.Table:
    """``routes.parquet`` rows from route indices (S, n_queries) into ``models`` (pure).

    Row (s, i) says draw s sends ``query_ids[i]`` to ``models[routes[s, i]]``; rows ordered by
    draw, then query order. Columns: :data:`ROUTES_SCHEMA`.
    """
    routes = np.asarray(routes)
    if routes.ndim != 2 or routes.shape[1] != len(query_ids):
        raise ValueError(f"routes must be (draws, {len(query_ids)}), got shape {routes.shape}")
    if routes.size and (routes.min() < 0 or routes.max() >= len(models)):
        raise ValueError(f"route indices must lie in [0, {len(models)}), got {routes.max()}")
    n_draws, n = routes.shape
    flat = routes.reshape(-1).astype(np.int32)
    names = np.asarray(list(models), dtype=object)
    return pa.table(
        {
            "draw": pa.array(np.repeat(np.arange(n_draws, dtype=np.int32), n)),
            "query_id": pa.array(list(query_ids) * n_draws, pa.string()),
            "model": pa.array(names[flat].tolist(), pa.string()),
            "model_index": pa.array(flat),
        },
        schema=ROUTES_SCHEMA,
    )


def route_lam_grid(
    routers: Sequence[Router], X: np.ndarray, lams: Sequence[float], beta: float
) -> np.ndarray:
    """Routes of ``routers`` (one family) on ``X`` at every λ of ``lams``: int64 array
    (len(lams), S, n_queries); entry [l, s] equals ``route_many(routers, X, lams[l], beta)[s]``.

    Families with ``predict_stats`` are evaluated once and only the argmax of
    ``Stats.utility(λ, β)`` is repeated, so a λ sweep costs far less than a prediction per λ.
    """
    if not lams:
        raise ValueError("lams is empty: give at least one λ to route at")
    if routers[0].provides_stats:
        stats = predict_stats_many(routers, X)
        return np.stack(
            [np.argmax(stats.utility(lam, beta), axis=-1).astype(np.int64) for lam in lams]
        )
    return np.stack([route_many(routers, X, lam=lam, beta=beta) for lam in lams])


def lam_routes_frame(
    routes: np.ndarray, lams: Sequence[float], query_ids: Sequence[str], models: Sequence[str]
) -> pa.Table:
    """``lam_routes.parquet`` rows from route indices (len(lams), S, n_queries) (pure).

    Row (l, s, i) says that at λ = ``lams[l]`` draw s sends ``query_ids[i]`` to
    ``models[routes[l, s, i]]``; rows ordered by λ (as given), draw, query order. Columns:
    :data:`LAM_ROUTES_SCHEMA`.
    """
    routes = np.asarray(routes)
    if routes.ndim != 3 or routes.shape[0] != len(lams):
        raise ValueError(
            f"routes must be ({len(lams)} lams, draws, queries), got shape {routes.shape}"
        )
    parts = []
    for lam, per_lam in zip(lams, routes, strict=True):
        t = routes_frame(per_lam, query_ids, models)
        parts.append(t.add_column(0, "lam", pa.array(np.full(t.num_rows, float(lam)))))
    return pa.concat_tables(parts).cast(LAM_ROUTES_SCHEMA)


# ------------------------------------------------------------------------------------------------
# the stage
# ------------------------------------------------------------------------------------------------
def folds_beta(router: Router) -> bool:
    """Whether ``router``'s family folds β into its training targets (a ``beta``
    hyperparameter: embedllm, rm_softmax), so each β needs its own fit."""
    return "beta" in router.get_params(deep=False)


def new_router(family: str, exp: Experiment, *, beta: float | None = None) -> Router:
    """An unfitted ``family`` router as the train stage builds it: ``random_state = exp.seed``;
    for families that fold β into training (embedllm, rm_softmax), ``beta`` (default
    ``exp.beta``); for families trained over a λ grid (rm_softmax), the experiment's λ plus
    ``exp.evaluation.lam_grid``."""
    router = make_router(family, random_state=exp.seed)
    # Families that fold β into their targets only define utilities at their own β.
    if folds_beta(router):
        router.set_params(beta=exp.beta if beta is None else beta)
    # A family that takes λ as an input (rm_softmax) trains on the λ values it will be asked
    # about: the experiment's λ and the Pareto sweep, so no route is an extrapolation.
    if "lam_grid" in router.get_params(deep=False):
        router.set_params(lam_grid=tuple(sorted({exp.lam, *exp.evaluation.lam_grid})))
    return router


def train_router(
    exp: Experiment, root: str | Path, dataset: str, family: str, mode: str
) -> dict[str, Any]:
    """Fit ``family`` on ``dataset``'s ``mode`` supervision under ``root`` and write the router
    and its test routes (see the module docstring for files and columns).

    Returns a report: ``dataset, family, mode, n_train`` (training queries), ``n_test``,
    ``n_draws`` (routers trained: S for single_shot, else 1), ``encoder`` (embedding space),
    ``fit_s`` (seconds spent in fit/fit_many), ``lam_route_s`` (seconds spent routing the λ
    sweep; 0 for modes outside :data:`LAM_SWEEP_MODES`) and ``dir`` (the model directory).
    """
    exp.benchmark(dataset)  # unknown dataset names raise listing the experiment's benchmarks
    check_families([family])
    check_modes([mode])
    models = exp.pool.names
    layout = RunLayout(root)
    out_dir = layout.model_dir(dataset, family, mode)

    frame = _supervision_frame(root, dataset, mode)
    train_ids, X_train, test_ids, X_test, encoder_name = embed_queries(exp, root, dataset)
    rows, targets = training_targets(frame, mode, train_ids, models)
    X = X_train[rows]

    router = new_router(family, exp)
    t0 = time.perf_counter()
    if isinstance(targets, BatchedTargets):
        routers = router.fit_many(X, targets)
    else:
        routers = [router.fit(X, targets)]
    fit_s = time.perf_counter() - t0
    routes = route_many(routers, X_test, lam=exp.lam, beta=exp.beta)
    lam_routes = None
    t0 = time.perf_counter()
    if mode in LAM_SWEEP_MODES:
        lam_routes = route_lam_grid(routers, X_test, exp.evaluation.lam_grid, exp.beta)
    lam_route_s = time.perf_counter() - t0

    # routes.parquet goes last and is removed first, so its presence means the directory is
    # complete (a half-written rerun never pairs a new router with stale routes or λ routes).
    routes_path = layout.routes_file(dataset, family, mode)
    lam_path = layout.lam_routes_file(dataset, family, mode)
    routes_path.unlink(missing_ok=True)
    lam_path.unlink(missing_ok=True)
    routers[0].save(out_dir)
    models = routers[0].models_
    if lam_routes is not None:
        table = lam_routes_frame(lam_routes, exp.evaluation.lam_grid, test_ids, models)
        atomic_write_table(table, lam_path)
    atomic_write_table(routes_frame(routes, test_ids, models), routes_path)
    return {
        "dataset": dataset,
        "family": family,
        "mode": mode,
        "n_train": len(rows),
        "n_test": len(test_ids),
        "n_draws": len(routers),
        "encoder": encoder_name,
        "fit_s": round(fit_s, 3),
        "lam_route_s": round(lam_route_s, 3),
        "dir": str(out_dir),
    }
