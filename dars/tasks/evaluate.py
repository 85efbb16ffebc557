"""The evaluate stage: the only I/O of the evaluation experiments, one Prefect task per experiment.

:func:`run_experiment` runs one registered :class:`~dars.evaluation.experiments.ExperimentSpec`:
check its settings, read the inputs it declares through storage (:func:`read_inputs`; every
kind of the vocabulary in :mod:`dars.evaluation.experiments.base` is read here), call its pure
``compute``, check every table against the declared schema, and write the tables with the run
context (:mod:`dars.storage.results`). A declared table the compute did not produce no longer
applies (e.g. label recovery after switching to a real pool) and is removed, so no stale table
is reported. When the compute finds an input missing or stale, its error gets the files it
concerns appended.

NO_CACHE: experiments read the store, the trained routes and the supervision and write results,
so a cached result could hide new routers, observations or results. One retry, for transient
filesystem errors only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from dars.benchmarks.loading import benchmark_for, items_by_id, load_splits
from dars.config import Experiment
from dars.evaluation.experiments.base import (
    EXPERIMENTS,
    Input,
    InputError,
    QueryEmbeddings,
    check_experiments,
)
from dars.evaluation.metrics import all_views_cost_bounds, complete_views, view_utilities
from dars.routers.training import LAM_SWEEP_SUPERVISIONS
from dars.storage import OBSERVATION_KEY, RunLayout, scan_observations, scan_rewrites
from dars.storage.models import complete_routers, read_lam_routes, read_routes
from dars.storage.results import remove_result, run_context, write_result
from dars.storage.supervision_store import read_supervision, supervision_exists
from dars.tasks.retry import retry_on_transient_io
from dars.tasks.train import embed_queries

__all__ = [
    "check_experiments",
    "experiment_task",
    "input_paths",
    "load_test_views",
    "read_inputs",
    "run_experiment",
]


# ------------------------------------------------------------------------------------------------
# reading the input vocabulary
# ------------------------------------------------------------------------------------------------
def _datasets(exp: Experiment) -> list[str]:
    return [b.name for b in exp.benchmarks]


def load_test_views(exp: Experiment, dataset: str) -> pl.DataFrame:
    """:func:`~dars.evaluation.metrics.view_utilities` of ``dataset``'s test observations of the
    pool models under ``exp.root``, at ``exp.lam``, with cost normalised over all of the
    dataset's ok observations (train and test, every model), so train and test share one scale.

    Raises ``FileNotFoundError`` naming the store and ``dars collect`` when the dataset has no
    ok test observation.
    """
    root = exp.root
    test = scan_observations(
        root, dataset=dataset, split="test", model=exp.models_for(dataset), status="ok"
    ).collect()
    if test.height == 0:
        raise FileNotFoundError(
            f"no ok test observations of the pool models for dataset {dataset!r} under "
            f"{RunLayout(root).observations_dir()}; run `dars collect` first"
        )
    bounds = all_views_cost_bounds(scan_observations(root, dataset=dataset, status="ok"))
    views, dropped = complete_views(
        view_utilities(test, lam=exp.lam, cost_bounds=bounds), exp.models_for(dataset)
    )
    if dropped:
        _warn(
            f"{dataset}: {dropped} (view, test query) pair(s) left out of the test views: some "
            f"model of {exp.models_for(dataset)} has no ok observation for them"
        )
    if views.height == 0:
        raise FileNotFoundError(
            f"dataset {dataset!r}: no test query has an ok observation of every model of "
            f"{exp.models_for(dataset)}; nothing can be scored"
        )
    return views


_WARNED: set[str] = set()


def _warn(message: str) -> None:
    """A warning in the flow run's log (shown by the CLI), or the module's log outside a run;
    once per process (every experiment reads the same test views)."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    try:
        get_run_logger().warning(message)
    except MissingContextError:
        logging.getLogger(__name__).warning(message)


def _view_utilities(exp: Experiment, _: Input) -> dict[str, pl.DataFrame]:
    return {ds: load_test_views(exp, ds) for ds in _datasets(exp)}


def _routes(exp: Experiment, _: Input) -> dict[tuple[str, str, str], pl.DataFrame]:
    return {
        (ds, family, supervision): read_routes(exp.root, ds, family, supervision)
        for ds in _datasets(exp)
        for family, supervision in complete_routers(exp.root, ds)
    }


def _lam_routes(exp: Experiment, _: Input) -> dict[tuple[str, str, str], pl.DataFrame | None]:
    return {
        (ds, family, supervision): read_lam_routes(exp.root, ds, family, supervision)
        for ds in _datasets(exp)
        for family, supervision in complete_routers(exp.root, ds)
        if supervision in LAM_SWEEP_SUPERVISIONS
    }


def _supervision(exp: Experiment, inp: Input) -> dict[str, pl.DataFrame]:
    table = str(inp.table)
    return {
        ds: read_supervision(exp.root, ds, table)
        for ds in _datasets(exp)
        if not inp.optional or supervision_exists(exp.root, ds, table)
    }


def _embeddings(exp: Experiment, _: Input) -> dict[str, QueryEmbeddings]:
    out = {}
    for ds in _datasets(exp):
        train_ids, X_train, test_ids, X_test, _encoder = embed_queries(exp, ds)
        out[ds] = QueryEmbeddings(train_ids, X_train, test_ids, X_test)
    return out


def _observations(exp: Experiment, _: Input) -> pl.DataFrame:
    return (
        scan_observations(exp.root, dataset=_datasets(exp), model=exp.pool.names)
        .select(*OBSERVATION_KEY, "response", "parse_ok", "score", "status")
        .collect()
    )


def _rewrites(exp: Experiment, _: Input) -> pl.DataFrame:
    return scan_rewrites(exp.root, dataset=_datasets(exp)).collect()


def _items(exp: Experiment, _: Input) -> dict[str, list[Any]]:
    splits = load_splits(exp)
    # Distinct query ids over both splits, train first (what rescoring looks items up by).
    return {ds: list(items_by_id(splits[ds]).values()) for ds in _datasets(exp)}


def _benchmarks(exp: Experiment, _: Input) -> dict[str, Any]:
    return {b.name: benchmark_for(b) for b in exp.benchmarks}


#: Input kind → its reader (see the vocabulary in :mod:`dars.evaluation.experiments.base`).
_READERS: dict[str, Callable[[Experiment, Input], Any]] = {
    "view_utilities": _view_utilities,
    "routes": _routes,
    "lam_routes": _lam_routes,
    "supervision": _supervision,
    "embeddings": _embeddings,
    "observations": _observations,
    "rewrites": _rewrites,
    "items": _items,
    "benchmarks": _benchmarks,
}


def read_inputs(exp: Experiment, inputs: Iterable[Input]) -> dict[Input, Any]:
    """``{input: value}`` for every input, read in the given order from ``exp.root`` (a missing
    required input raises FileNotFoundError naming its file and the command that writes it)."""
    out: dict[Input, Any] = {}
    for inp in inputs:
        if inp not in out:
            out[inp] = _READERS[inp.kind](exp, inp)
    return out


def input_paths(exp: Experiment, where: Iterable[tuple[Input, Any]]) -> list[Path]:
    """The files or directories that hold the given (input, key) pairs under ``exp.root``,
    without repeats (items and benchmarks come from the benchmark data, not the run: none)."""
    layout = RunLayout(exp.root)
    paths: list[Path] = []
    for inp, key in where:
        kind = inp.kind
        if kind in ("view_utilities", "observations"):
            path = layout.observations_dir()
        elif kind == "rewrites":
            path = layout.rewrites_dir()
        elif kind == "routes":
            path = layout.routes_file(*key) if key else layout.models_dir()
        elif kind == "lam_routes":
            path = layout.lam_routes_file(*key) if key else layout.models_dir()
        elif kind == "supervision":
            path = layout.supervision_file(key, str(inp.table)) if key else layout.supervision_dir()
        elif kind == "embeddings":
            path = layout.embeddings_dir()
        else:
            continue
        if path not in paths:
            paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------
# running an experiment
# ------------------------------------------------------------------------------------------------
def _split(value: Any) -> tuple[pl.DataFrame, Mapping[str, Any]]:
    """A compute's table: a frame, or (frame, extra keys of its JSON twin)."""
    if isinstance(value, tuple):
        frame, extras = value
        return frame, extras
    return value, {}


def _check_schema(name: str, table: str, frame: Any, schema: Mapping[str, Any]) -> None:
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(
            f"experiment {name!r} returned {type(frame).__name__} for table {table!r}; "
            "expected a polars DataFrame"
        )
    if frame.schema != pl.Schema(schema):
        raise ValueError(
            f"experiment {name!r} produced table {table!r} with columns {dict(frame.schema)}; "
            f"its spec declares {dict(pl.Schema(schema))}"
        )


def run_experiment(exp: Experiment, name: str) -> dict[str, pl.DataFrame]:
    """Run experiment ``name`` on ``exp.root`` (see the module docstring); returns the tables it
    wrote, in the spec's order."""
    spec = EXPERIMENTS.get(name)
    if spec.check is not None:
        spec.check(exp)
    inputs = read_inputs(exp, spec.inputs)
    try:
        produced = spec.compute(inputs, exp)
    except InputError as exc:
        paths = "; ".join(str(p) for p in input_paths(exp, exc.where))
        message = f"{exc} (see {paths})" if paths else str(exc)
        raise type(exc)(message, exc.where) from None
    unknown = [t for t in produced if t not in spec.tables]
    if unknown:
        raise ValueError(
            f"experiment {name!r} produced table(s) {unknown} its spec does not declare "
            f"(tables: {list(spec.tables)})"
        )
    tables: dict[str, pl.DataFrame] = {}
    extras: dict[str, Mapping[str, Any]] = {}
    for table, schema in spec.tables.items():
        if table in produced:
            tables[table], extras[table] = _split(produced[table])
            _check_schema(name, table, tables[table], schema)
    # Checked first, written after: a bad table never leaves the others half-updated.
    context = run_context(exp)
    for table in spec.tables:
        if table in tables:
            write_result(exp.root, table, tables[table], context, **extras[table])
        else:
            remove_result(exp.root, table)
    return tables


@task(
    name="experiment",
    task_run_name="experiment {name}",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def experiment_task(exp: Experiment, name: str) -> dict[str, pl.DataFrame]:
    """Run evaluation experiment ``name``; returns its tables (table name → frame)."""
    return run_experiment(exp, name)
