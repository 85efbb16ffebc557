"""Which collection work is left, read from the store: no Prefect, no model call.

The collect flows' planning tasks (:mod:`dars.tasks.collect`) and the CLI ask these; the CLI
asks :func:`nothing_to_collect` before it starts Prefect, which is why this module imports
neither Prefect nor litellm (a collect with nothing to do then takes seconds, not the Prefect
server's start).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from dars.benchmarks.loading import load_splits
from dars.config import Experiment
from dars.plan import KEY, build_plan, expected_rewrites, filter_keys, status
from dars.sim import simulated_truth
from dars.storage import read_observations, scan_rewrites
from dars.storage.layout import RunLayout
from dars.storage.truth import read_truth


def pending_rewrite_shards(
    exp: Experiment, only: Mapping[str, Sequence[str]] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The (dataset, split, shard) rewrite shards with a planned rewrite not stored yet, with
    ``done`` (rewrites already stored), and the number of shards that are complete. ``only``
    (:func:`dars.plan.key_filter`) narrows to some datasets and splits; its models do not
    narrow rewrites (every model's decodes need them)."""
    plan = filter_keys(expected_rewrites(exp, load_splits(exp)), only)
    key = ["dataset", "split", "query_id", "rewrite_id"]
    have = scan_rewrites(exp.root).select(key).collect()
    done = plan.join(have, on=key, how="semi").group_by("dataset", "split", "shard").len("done")
    shards = (
        plan.group_by("dataset", "split", "shard", maintain_order=True)
        .len("expected")
        .join(done, on=["dataset", "split", "shard"], how="left")
        .with_columns(pl.col("done").fill_null(0))
    )
    todo = shards.filter(pl.col("done") < pl.col("expected"))
    return todo.select("dataset", "split", "shard", "done").to_dicts(), shards.height - todo.height


def pending_decode_shards(
    exp: Experiment, only: Mapping[str, Sequence[str]] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The (dataset, split, model, shard) decode shards with a planned key not stored ok yet,
    with ``done`` (keys already stored ok), and the number of shards that are complete.
    ``only`` (:func:`dars.plan.key_filter`) keeps the shards of some datasets, models and
    splits; a shard lies in one (dataset, split, model), so a kept shard asks for no key
    outside the filter. Reads the store with :func:`~dars.storage.read_observations` (safe
    while shards are being replaced)."""
    plan = filter_keys(build_plan(exp, load_splits(exp)), only)
    st = status(plan, read_observations(exp.root, [*KEY, "status"])).filter(
        pl.col("dataset").is_not_null()
    )
    todo = st.filter(pl.col("done") < pl.col("expected"))
    rows = todo.select("dataset", "split", "model", "shard", "done").to_dicts()
    return rows, st.height - todo.height


def truth_current(exp: Experiment, dataset: str) -> bool:
    """Whether the stored truth of ``dataset`` is what :func:`store_truth` would leave: the
    simulator's truth for a simulated pool (same rows and values), none for any other pool."""
    path = RunLayout(exp.root).truth_file(dataset)
    if not exp.pool.simulated or exp.benchmark(dataset).source == "store":
        return not path.exists()
    if not path.is_file():
        return False
    key = ["dataset", "query_id", "model"]
    stored = read_truth(exp.root, dataset).sort(key)
    want = simulated_truth(exp, dataset).select(stored.columns).sort(key)
    return stored.equals(want)


def nothing_to_collect(
    exp: Experiment, only: Mapping[str, Sequence[str]] | None = None
) -> str | None:
    """One line saying why a collect run of ``exp`` (narrowed by ``only``) would call no model
    and store nothing — every planned rewrite and decode key is stored ok and the truth of each
    collected dataset is current (:func:`truth_current`) — or None when it has work. The CLI
    checks this before it starts Prefect, so a collect with nothing to do takes seconds."""
    if pending_rewrite_shards(exp, only)[0] or pending_decode_shards(exp, only)[0]:
        return None
    if not all(truth_current(exp, b.name) for b in exp.collected):
        return None
    return (
        f"nothing to collect on {exp.root}: every planned call is stored and the stored truth "
        "is current, so the collect flow was not started"
    )


def collection_status(
    exp: Experiment, only: Mapping[str, Sequence[str]] | None = None
) -> pl.DataFrame:
    """Progress of the experiment's plan in its store (:func:`dars.plan.status`: one row per
    (dataset, split, model, shard) with expected / done / failed / missing, then a total row),
    for the keys ``only`` keeps (:func:`dars.plan.key_filter`; all by default). Reads with
    :func:`~dars.storage.read_observations`, so it is safe during a collection."""
    plan = filter_keys(build_plan(exp, load_splits(exp)), only)
    return status(plan, read_observations(exp.root, [*KEY, "status"]))


__all__ = [
    "collection_status",
    "nothing_to_collect",
    "pending_decode_shards",
    "pending_rewrite_shards",
    "truth_current",
]
