"""The train stage: supervision tables + query embeddings → fitted routers and their test routes.

For one (dataset, router family, supervision) :func:`train_router` reads the dataset's
supervision table through :mod:`dars.storage.supervision_store`, embeds the queries
(:func:`embed_queries`, cached in :mod:`dars.storage.embeddings`), fits the router with the pure
helpers of :mod:`dars.routers.training` and stores it with
:func:`dars.storage.models.write_trained`: the router (for ``single_shot`` only the router of
draw 0 — S draws × 7 families × datasets of saved routers would be mostly redundant bytes, and
the evaluation needs their routes), its routes at the experiment's λ and β and, for the
supervisions of the Pareto sweep, its routes at every λ of ``experiment.evaluation.lam_grid``
(families that predict q, c and σ are evaluated once and only the argmax of the utility
changes; rm_softmax, conditioned on λ, is asked per λ).

Training rows are the dataset's train queries in split order that appear in the supervision
(queries with a failed cell are dropped by the supervise stage). Routers are built with
``random_state = experiment.seed`` (single-shot draw s: ``draw_seed(seed, s)``, independent
draws) and, for families that fold β into training (embedllm,
rm_softmax), ``beta = experiment.beta``, so routes at the experiment's β are defined.

:func:`train_task` is the Prefect task: one task run per (dataset, family, supervision).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.benchmarks.loading import load_benchmark_splits
from dars.config import Experiment
from dars.routers import Router
from dars.routers.encoders import QueryEncoder, TfidfEncoder, item_text, shared_encoder
from dars.routers.training import (
    DEFAULT_SUPERVISIONS,
    LAM_SWEEP_SUPERVISIONS,
    check_families,
    check_supervisions,
    fit_and_route,
    lam_routes_table,
    new_router,
    routes_table,
    training_targets,
)
from dars.storage.embeddings import cached_embeddings
from dars.storage.models import write_trained
from dars.storage.supervision_store import read_supervision
from dars.tasks.retry import retry_on_transient_io

__all__ = [
    "REPORT_SCHEMA",
    "Embeddings",
    "check_training",
    "embed_queries",
    "router_for",
    "supervision_frame",
    "train_router",
    "train_task",
]

Embeddings = tuple[list[str], np.ndarray, list[str], np.ndarray, str]

#: Columns of a training report (one row per trained (dataset, family, supervision)).
REPORT_SCHEMA = {
    "dataset": pl.String,
    "family": pl.String,
    "supervision": pl.String,
    "n_train": pl.Int64,
    "n_test": pl.Int64,
    "n_draws": pl.Int64,
    "encoder": pl.String,
    "fit_s": pl.Float64,
    "lam_route_s": pl.Float64,
    "dir": pl.String,
}

# Loading a sentence encoder costs seconds and memory, and every training task of a dataset
# needs the same embeddings: one encoder per configured name (and TF-IDF fit per training corpus)
# per process.
_ENCODERS: dict[Any, QueryEncoder] = {}
_ENCODER_LOCK = threading.Lock()


def _encoder(name: str, train_texts: Sequence[str]) -> QueryEncoder:
    """The configured encoder, loaded once per process; a TF-IDF encoder (asked for, or the
    fallback) is fitted on ``train_texts`` and memoised per corpus."""
    with _ENCODER_LOCK:
        base = _ENCODERS.get(name)
        if base is None:
            base = _ENCODERS[name] = shared_encoder(name)
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


def check_training(
    exp: Experiment, families: Sequence[str] | None, supervisions: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The (families, supervisions) a train run covers: the given ones, or the config's
    ``families`` and :data:`~dars.routers.training.DEFAULT_SUPERVISIONS`; unknown names raise
    listing the valid ones."""
    families = check_families(exp.families if families is None else families)
    return families, check_supervisions(
        DEFAULT_SUPERVISIONS if supervisions is None else supervisions
    )


def embed_queries(exp: Experiment, dataset: str) -> Embeddings:
    """Embeddings of ``dataset``'s train and test queries, cached in the run's store.

    Returns ``(train_ids, X_train, test_ids, X_test, encoder_name)``: ids in split order, X as
    float32 arrays with one row per id, and the name of the embedding space (e.g.
    ``st:all-MiniLM-L6-v2``, or ``tfidf:<digest>`` when TF-IDF was configured or the sentence
    encoder could not load). Texts are :func:`~dars.routers.encoders.item_text`. A rerun encodes
    nothing.
    """
    splits = load_benchmark_splits(exp.benchmark(dataset), exp.seed, exp.root)
    texts = {s: [item_text(it) for it in splits[s]] for s in ("train", "test")}
    ids = {s: [it.query_id for it in splits[s]] for s in ("train", "test")}
    for split in ("train", "test"):
        if not texts[split]:
            raise ValueError(f"dataset {dataset!r} has no {split} queries (check n_{split})")
    encoder = _encoder(exp.encoder, texts["train"])
    X = {
        split: cached_embeddings(exp.root, exp.encoder, dataset, split, encoder, texts[split])[0]
        for split in ("train", "test")
    }
    return ids["train"], X["train"], ids["test"], X["test"], encoder.name


def supervision_frame(exp: Experiment, dataset: str, supervision: str) -> pl.DataFrame:
    """The supervision rows ``supervision`` trains on (see :mod:`dars.routers.training`)."""
    if supervision == "single_shot":
        return read_supervision(exp.root, dataset, "single_shot_draws")
    if supervision == "dars":
        return read_supervision(exp.root, dataset, "dars")
    ablations = read_supervision(exp.root, dataset, "ablations")
    frame = ablations.filter(pl.col("supervision") == supervision)
    if frame.height == 0:
        have = sorted(ablations["supervision"].unique().to_list())
        raise ValueError(
            f"supervision table 'ablations' of dataset {dataset!r} has no rows for supervision "
            f"{supervision!r} (supervisions present: {have}); rerun `dars supervise`"
        )
    return frame.drop("supervision")


def router_for(exp: Experiment, family: str, *, beta: float | None = None) -> Router:
    """An unfitted ``family`` router as the train stage builds it for ``exp`` (its preset, seed,
    β, and the λ grid of a λ-conditioned family: the experiment's λ plus the Pareto sweep)."""
    return new_router(
        family,
        random_state=exp.seed,
        beta=exp.beta if beta is None else beta,
        lam_grid=(exp.lam, *exp.evaluation.lam_grid),
        preset=exp.router_preset_of(family),
    )


def train_router(exp: Experiment, dataset: str, family: str, supervision: str) -> dict[str, Any]:
    """Fit ``family`` on ``dataset``'s ``supervision`` labels in ``exp.root`` and store the
    router and its test routes (see the module docstring).

    Returns a report row (:data:`REPORT_SCHEMA`): ``n_train`` (training queries), ``n_test``,
    ``n_draws`` (routers trained: S for single_shot, else 1), ``encoder`` (embedding space),
    ``fit_s`` (seconds spent in fit/fit_many), ``lam_route_s`` (seconds spent routing the λ
    sweep; 0 for supervisions outside :data:`~dars.routers.training.LAM_SWEEP_SUPERVISIONS`)
    and ``dir``.
    """
    exp.benchmark(dataset)  # unknown dataset names raise listing the experiment's benchmarks
    check_families([family])
    check_supervisions([supervision])
    models = exp.models_for(dataset)

    frame = supervision_frame(exp, dataset, supervision)
    train_ids, X_train, test_ids, X_test, encoder_name = embed_queries(exp, dataset)
    rows, targets = training_targets(frame, supervision, train_ids, models)
    fitted = fit_and_route(
        router_for(exp, family),
        X_train[rows],
        targets,
        X_test,
        lam=exp.lam,
        beta=exp.beta,
        lam_grid=exp.evaluation.lam_grid if supervision in LAM_SWEEP_SUPERVISIONS else None,
    )
    routers, lam_routes = fitted.routers, fitted.lam_routes
    names = routers[0].models_
    out_dir = write_trained(
        exp.root,
        dataset,
        family,
        supervision,
        routers[0],
        routes_table(fitted.routes, test_ids, names),
        None
        if lam_routes is None
        else lam_routes_table(lam_routes, exp.evaluation.lam_grid, test_ids, names),
    )
    return {
        "dataset": dataset,
        "family": family,
        "supervision": supervision,
        "n_train": len(rows),
        "n_test": len(test_ids),
        "n_draws": len(routers),
        "encoder": encoder_name,
        "fit_s": round(fitted.fit_s, 3),
        "lam_route_s": round(fitted.lam_route_s, 3),
        "dir": str(out_dir),
    }


@task(
    name="train-router",
    task_run_name="train {dataset}/{family}/{supervision}",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    # The task reads supervision and embeddings and writes the router: a cache hit keyed on its
    # parameters would skip rewriting files that were deleted or made stale by new supervision.
    cache_policy=NO_CACHE,
)
def train_task(exp: Experiment, dataset: str, family: str, supervision: str) -> dict[str, Any]:
    """Train ``family`` on ``dataset``'s ``supervision`` labels; returns the training report."""
    return train_router(exp, dataset, family, supervision)
