"""The supervise stage: observation store → supervision tables, per dataset.

:func:`supervise_dataset` reads the experiment's **train** observations with ``status == "ok"``,
view ``train``, of the pool models, inside the protocol's grid (rewrites ``0..K-1`` plus the
original -1 when ``train_include_original``, decodes ``0..M-1``), keeps the queries that have an
ok observation for every pool model (the others are counted as ``n_queries_dropped``), computes
every table with :func:`dars.supervision.tables.supervision_tables` and writes them through
:mod:`dars.storage.supervision_store` (``supervision/dataset=<d>/<name>.parquet``). For a
simulated pool the ``recovery`` table measures labels against the simulator's truth, which the
collect stage stored (:mod:`dars.storage.truth`); for any other pool it is removed, so a stale
file from an earlier simulated run never survives. ``summary`` is written last, so its presence
means the dataset's other tables are complete. Rerunning on the same store rewrites identical
files.

:func:`supervise_dataset_task` is the Prefect task: one task run per dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.evaluation.metrics import all_views_cost_bounds
from dars.storage import RunLayout, scan_observations
from dars.storage.supervision_store import (
    remove_supervision,
    write_supervision,
    write_supervision_chunks,
)
from dars.storage.truth import read_truth
from dars.supervision.core import (
    PreparedObservations,
    cost_bounds,
    prepare_once,
    with_cell_ids,
)
from dars.supervision.recovery import truth_on_cost_scale
from dars.supervision.tables import (
    SINGLE_SHOT,
    TABLES,
    complete_queries,
    grid_size,
    incomplete_queries,
    subgrid_protocols,
    summarise,
    supervision_stream,
    train_grid,
)
from dars.tasks.retry import retry_on_transient_io

__all__ = [
    "DatasetSupervision",
    "load_train_observations",
    "supervise",
    "supervise_dataset",
    "supervise_dataset_task",
]

_OBS_COLUMNS = (
    "dataset",
    "split",
    "view",
    "query_id",
    "model",
    "rewrite_id",
    "decode_id",
    "score",
    "cost_usd",
    "status",
)


class DatasetSupervision(NamedTuple):
    """What :func:`supervise_dataset` did: the files written (table name → path, in
    :data:`~dars.supervision.tables.TABLES` order), the dataset's summary frame and warnings
    for the user (queries dropped for a missing model, uneven observation counts)."""

    dataset: str
    files: dict[str, Path]
    summary: pl.DataFrame
    warnings: tuple[str, ...] = ()


def load_train_observations(exp: Experiment, dataset: str) -> pl.DataFrame:
    """The rows the stage supervises on: ``dataset``'s train-split, view-train, status-ok
    observations of its models (columns ``_OBS_COLUMNS``) — inside the protocol's grid for a
    collected benchmark; every stored one (any formulation, the original included, and every
    decode) for an imported dataset (``source: store``), whose grid is what was imported.

    Raises ``FileNotFoundError`` naming the store location and what it holds for the dataset
    when there is no such row (e.g. the decode stage has not run).
    """
    models = exp.models_for(dataset)
    p = exp.protocol
    rewrites, n_decodes = train_grid(p.train_rewrites, p.train_decodes, p.train_include_original)
    in_grid = pl.col("rewrite_id").is_in(rewrites) & (pl.col("decode_id") < n_decodes)
    if exp.benchmark(dataset).source == "store":
        in_grid = pl.lit(True)
    train = scan_observations(exp.root, dataset=dataset, split="train", model=models, status="ok")
    obs = train.filter((pl.col("view") == "train") & in_grid).select(_OBS_COLUMNS).collect()
    if obs.height == 0:
        layout = RunLayout(exp.root)
        held = (
            scan_observations(exp.root, dataset=dataset)
            .group_by("split", "status")
            .agg(pl.len())
            .sort("split", "status")
            .collect()
        )
        what = (
            ", ".join(f"{r['len']} {r['split']}/{r['status']}" for r in held.iter_rows(named=True))
            or "nothing"
        )
        outside = train.select(pl.len()).collect().item()
        if outside:
            raise FileNotFoundError(
                f"dataset {dataset!r}: the store holds {outside} ok train observations of "
                f"{models}, but none inside the protocol's train grid (formulations "
                f"{rewrites}, decodes 0..{n_decodes - 1}); data imported with `dars import` "
                "answers the original query (rewrite_id -1): declare the dataset "
                "`source: store` to supervise on every stored observation, or set "
                "protocol.train_include_original"
            )
        raise FileNotFoundError(
            f"no ok train observations for dataset {dataset!r} and pool models {models} under "
            f"{layout.observation_split_dir(dataset, 'train')} (the store holds {what} for this "
            f"dataset); collect observations first "
            f"(`dars collect --config <config.yaml> --root {layout.root}`)"
        )
    return obs


def training_cost_bounds(exp: Experiment, dataset: str) -> pl.DataFrame | None:
    """The cost range that normalises ``dataset``'s training costs: None under ``cost_scope:
    train`` (the range of the supervised train rows themselves), else (``all``, the paper's
    choice) the range over every ok observation of the dataset, train and test, exactly the
    scale the evaluate stage puts the test views on."""
    if exp.cost_scope == "train":
        return None
    return all_views_cost_bounds(scan_observations(exp.root, dataset=dataset, status="ok"))


def supervise_dataset(exp: Experiment, dataset: str, *, n_boot: int = 1000) -> DatasetSupervision:
    """Read ``dataset``'s train observations under ``exp.root``, compute every supervision table
    and write them (see the module docstring)."""
    exp.benchmark(dataset)  # unknown names raise listing the experiment's benchmarks
    models = exp.models_for(dataset)
    raw = load_train_observations(exp, dataset)
    bounds = training_cost_bounds(exp, dataset)
    # Validated, cost-normalised and key-coded once; every table below shares it. A query
    # lacking a model is dropped first (under cost_scope `train` cost is normalised over the
    # queries kept), which prepares the kept rows again: rare, and cheaper than checking the
    # strings every time.
    prep = prepare_once(raw, cost_bounds=bounds)
    n_dropped = 0
    if incomplete_queries(prep, models):
        obs, n_dropped = complete_queries(raw, models)
        if obs.height == 0:
            have = sorted(raw["model"].unique().to_list())
            raise ValueError(
                f"dataset {dataset!r}: no train query has an ok observation for every one of "
                f"its models; models with observations: {have}, models of the dataset: "
                f"{models} (route among fewer models with the benchmark's `models` field)"
            )
        prep = prepare_once(obs, cost_bounds=bounds)
        del obs
    warnings = _warnings(dataset, raw, prep, models, n_dropped)
    del raw
    k_max, m_max = grid_size(prep)
    n_observations = prep.height
    truth = None
    if exp.pool.simulated:
        stored = read_truth(exp.root, dataset)
        query_ids = prep.frame["query_id"].unique().cast(pl.String).to_list()
        scale = bounds if bounds is not None else cost_bounds(prep)
        truth = truth_on_cost_scale(stored, query_ids, scale)
    # Drop the completion marker first: until the new summary lands, a reader must not take an
    # old summary as proof that the (partly rewritten) tables are complete.
    remove_supervision(exp.root, dataset, "summary")
    if truth is None:
        remove_supervision(exp.root, dataset, "recovery")
    # Each table is written as soon as it is computed and then freed; the single-shot tables
    # are streamed a block of draws at a time.
    files: dict[str, Path] = {}
    tables: dict[str, pl.DataFrame] = {}
    for name, value in supervision_stream(
        prep,
        models,
        lam=exp.lam,
        beta=exp.beta,
        draws=exp.single_shot_draws,
        seed=exp.seed,
        protocols=subgrid_protocols(k_max, m_max),
        truth=truth,
        n_boot=n_boot,
        definition=exp.diagnostics.definition,
    ):
        if name == SINGLE_SHOT:
            shot_names = ("single_shot_draws", "single_shot_labels")
            paths = write_supervision_chunks(
                exp.root, dataset, shot_names, ((c.draws, c.labels) for c in value)
            )
            files.update(zip(shot_names, paths, strict=True))
            continue
        files[name] = write_supervision(exp.root, dataset, name, value)
        if name in ("dars", "diagnostics", "recovery"):  # what the summary reads
            tables[name] = value
    tables["summary"] = summarise(
        dataset, tables, n_observations=n_observations, n_queries_dropped=n_dropped
    )
    files["summary"] = write_supervision(exp.root, dataset, "summary", tables["summary"])
    files = {name: files[name] for name in TABLES if name in files}
    return DatasetSupervision(dataset, files, tables["summary"], warnings)


def _warnings(
    dataset: str,
    raw: pl.DataFrame,
    prep: PreparedObservations,
    models: list[str],
    n_dropped: int,
) -> tuple[str, ...]:
    """What the user should know about the rows supervised: queries dropped because a model
    never answered them (per model), and uneven observation counts per (query, model)."""
    out = []
    if n_dropped:
        have = raw.group_by("query_id").agg(pl.col("model").unique())
        lacking = {m: have.filter(~pl.col("model").list.contains(m)).height for m in models}
        which = ", ".join(f"{m} ({n})" for m, n in lacking.items() if n)
        out.append(
            f"{dataset}: {n_dropped} of {have.height} train queries dropped: no ok observation "
            f"of {which}; every table covers the {have.height - n_dropped} others"
        )
    per_cell = with_cell_ids(prep.frame).group_by("_cell").len()
    lo, hi = int(per_cell["len"].min()), int(per_cell["len"].max())
    if lo != hi:
        uneven = per_cell.filter(pl.col("len") != hi).height
        out.append(
            f"{dataset}: uneven observations per (query, model): {lo} to {hi} "
            f"({uneven} of {per_cell.height} cells below {hi}); every one is used (μ, σ and c̄ "
            "are means over what each cell has)"
        )
    return tuple(out)


def supervise(
    exp: Experiment, *, datasets: Sequence[str] | None = None, n_boot: int = 1000
) -> pl.DataFrame:
    """Run :func:`supervise_dataset` for each dataset (default: every benchmark of the
    experiment, in config order); returns the concatenated summaries."""
    names = [b.name for b in exp.benchmarks] if datasets is None else list(datasets)
    return pl.concat([supervise_dataset(exp, d, n_boot=n_boot).summary for d in names])


@task(
    name="supervise-dataset",
    task_run_name="supervise-{dataset}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_on_transient_io,
    # Reads the observation store and writes supervision files: a cache hit keyed on its inputs
    # would skip rewriting files that were deleted or made stale by new observations, and a
    # rerun costs seconds of polars.
    cache_policy=NO_CACHE,
)
def supervise_dataset_task(exp: Experiment, dataset: str, n_boot: int = 1000) -> DatasetSupervision:
    """Compute and write every supervision table of ``dataset``."""
    return supervise_dataset(exp, dataset, n_boot=n_boot)
