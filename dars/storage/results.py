"""The result store: evaluation tables (``<root>/results/<name>.{parquet,json}``).

Every table an experiment produces is written by :func:`write_result`: the Parquet file is what
code reads back (the report, tests), the JSON twin holds the same rows plus the run's context
(:func:`run_context`) and any extra keys the experiment adds, for people and other tools. Paths
come from :class:`~dars.storage.RunLayout` only; both files are written atomically, Parquet
first, so a reader never sees a JSON without its table.

Which experiment writes which table is not known here: the experiment specs
(:mod:`dars.evaluation.experiments`) declare their tables, and readers pass the producing
experiment's name so a "missing" error can name the command that writes it.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from dars.config import Experiment
from dars.storage.layout import RunLayout
from dars.storage.store import atomic_write_table, atomic_write_text

__all__ = [
    "ResultMissingError",
    "read_context",
    "read_result",
    "remove_result",
    "result_exists",
    "run_context",
    "write_result",
]


class ResultMissingError(FileNotFoundError):
    """A result table is not on disk (the experiment that writes it has not run yet)."""


def run_context(exp: Experiment) -> dict[str, Any]:
    """What a reader of a result needs to know about the run that produced it: experiment name,
    λ, β, seed, single-shot draws, each family's router preset, the training cost scope, pool
    (name → litellm route), rewriter, protocol, benchmarks with their sizes,
    whether the pool is simulated, the whole validated config, and the UTC time the result was
    written."""
    simulated = exp.pool.simulated
    return {
        "experiment": exp.name,
        "lam": exp.lam,
        "beta": exp.beta,
        "seed": exp.seed,
        "single_shot_draws": exp.single_shot_draws,
        "router_presets": {f: exp.router_preset_of(f) for f in exp.families},
        "cost_scope": exp.cost_scope,
        "pool": {m.name: m.litellm_model for m in exp.pool.models},
        "rewriter": exp.rewriter.litellm_model if exp.rewriter is not None else None,
        "protocol": exp.protocol.model_dump(),
        "benchmarks": [
            {"name": b.name, "source": b.source, "n_train": b.n_train, "n_test": b.n_test}
            for b in exp.benchmarks
        ],
        "simulated": simulated,
        # The whole validated config (keys are never in it: ModelSpec holds only the *name* of
        # the variable with the key, and rejects credential-like extra_params).
        "config": exp.model_dump(mode="json"),
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_result(
    root: str | Path,
    name: str,
    frame: pl.DataFrame,
    context: Mapping[str, Any],
    **extra: Any,
) -> Path:
    """Write ``frame`` as result ``name`` under ``root``; returns the Parquet path.

    The JSON twin is ``{"result": name, "context": context, **extra, "rows": [...]}``;
    ``context`` is normally :func:`run_context` of the experiment that computed the table.
    """
    layout = RunLayout(root)
    path = layout.results_file(name, "parquet")
    atomic_write_table(frame.to_arrow(), path)
    payload = {"result": name, "context": dict(context), **extra, "rows": frame.to_dicts()}
    atomic_write_text(json.dumps(payload, indent=1, default=str), layout.results_file(name, "json"))
    return path


def remove_result(root: str | Path, name: str) -> None:
    """Delete result ``name`` (both files) under ``root`` if present — for a result that no
    longer applies (e.g. label recovery after switching to a real pool), so no stale table is
    reported."""
    layout = RunLayout(root)
    for ext in ("parquet", "json"):
        layout.results_file(name, ext).unlink(missing_ok=True)


def result_exists(root: str | Path, name: str) -> bool:
    """Whether result ``name`` has been written under ``root``."""
    return RunLayout(root).results_file(name, "parquet").is_file()


def read_result(root: str | Path, name: str, *, producer: str | None = None) -> pl.DataFrame:
    """Result table ``name`` under ``root``; :class:`ResultMissingError` naming the file and
    the command that writes it when absent (``dars experiment <producer>`` when the producing
    experiment is given, else ``dars evaluate``)."""
    path = RunLayout(root).results_file(name, "parquet")
    if not path.is_file():
        command = (
            f"`dars experiment {producer}` (or `dars evaluate` for all)"
            if producer
            else ("`dars evaluate`")
        )
        raise ResultMissingError(f"result {name!r} not found at {path}; run {command}")
    return pl.read_parquet(path)


def read_context(root: str | Path, name: str) -> dict[str, Any]:
    """The run context stored with result ``name`` (see :func:`run_context`)."""
    path = RunLayout(root).results_file(name, "json")
    if not path.is_file():
        raise ResultMissingError(f"result {name!r} has no JSON twin at {path}")
    return json.loads(path.read_text(encoding="utf-8"))["context"]
