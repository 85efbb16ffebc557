"""``dars status --repair``: quarantine the damaged files of a run's stores and say what to rerun.

A damaged file cannot be read, so what it held is not known; what is known is where the plan
puts keys. The keys to rerun are the planned keys of the quarantined files' partitions and
shards (observations: dataset, split, model, shard; rewrites: dataset, split, shard) that the
store no longer holds with status ok (rewrites: holds at all). ``dars collect`` makes exactly
those again (every stored ok key is skipped). Keys that only an import put there (not in the
plan) cannot be listed: import the file again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from dars.benchmarks.loading import load_splits
from dars.config import Experiment
from dars.plan import KEY, build_plan, expected_rewrites
from dars.storage import read_observations, scan_rewrites
from dars.storage.integrity import DamagedFile, Moved, quarantine

#: Columns of :func:`keys_to_rerun`: one row per key to make again; ``store`` says which store
#: (observations | rewrites); rewrite keys have no model and no decode_id.
RERUN_SCHEMA = {
    "store": pl.String,
    "dataset": pl.String,
    "split": pl.String,
    "model": pl.String,
    "shard": pl.Int32,
    "query_id": pl.String,
    "rewrite_id": pl.Int32,
    "decode_id": pl.Int32,
}


@dataclass(frozen=True)
class Repair:
    """What :func:`repair_store` did: the files ``moved`` into quarantine and the ``keys`` to
    rerun (columns ``RERUN_SCHEMA``)."""

    moved: list[Moved]
    keys: pl.DataFrame


def _where(d: DamagedFile, columns: Sequence[str]) -> pl.Expr:
    """Rows of the plan that live in the damaged file's partition (and shard, if it names one)."""
    cond = pl.lit(True)
    for k, v in d.partition.items():
        if k in columns:
            cond = cond & (pl.col(k) == v)
    if d.shard is not None:
        cond = cond & (pl.col("shard") == d.shard)
    return cond


def keys_to_rerun(exp: Experiment, damaged: Sequence[DamagedFile]) -> pl.DataFrame:
    """Planned keys of the ``damaged`` files' partitions/shards that the store does not hold
    now (after they were moved away): one row per key, columns ``RERUN_SCHEMA``, plan order."""
    out = [pl.DataFrame(schema=RERUN_SCHEMA)]
    if not damaged or not exp.collected:
        return out[0]
    splits = load_splits(exp)
    obs = [d for d in damaged if d.store == "observations"]
    if obs:
        plan = build_plan(exp, splits)
        hit = plan.filter(pl.any_horizontal([_where(d, plan.columns) for d in obs]))
        done = read_observations(exp.root, list(KEY), status="ok")
        missing = hit.join(done, on=list(KEY), how="anti", maintain_order="left")
        out.append(missing.with_columns(pl.lit("observations").alias("store")))
    rew = [d for d in damaged if d.store == "rewrites"]
    if rew:
        plan = expected_rewrites(exp, splits)
        hit = plan.filter(pl.any_horizontal([_where(d, plan.columns) for d in rew]))
        key = ["dataset", "split", "query_id", "rewrite_id"]
        have = scan_rewrites(exp.root).select(key).collect()
        missing = hit.join(have, on=key, how="anti", maintain_order="left")
        out.append(missing.with_columns(pl.lit("rewrites").alias("store")))
    return pl.concat(
        [
            f.select(
                [
                    pl.col(c).cast(t) if c in f.columns else pl.lit(None, t).alias(c)
                    for c, t in RERUN_SCHEMA.items()
                ]
            )
            for f in out
        ]
    )


def repair_store(exp: Experiment, damaged: Sequence[DamagedFile]) -> Repair:
    """Move the ``damaged`` files of ``exp.root`` into quarantine (see
    :func:`dars.storage.integrity.quarantine`) and list the keys to rerun."""
    moved = quarantine(exp.root, damaged)
    return Repair(moved, keys_to_rerun(exp, [m.damaged for m in moved]))


__all__ = ["RERUN_SCHEMA", "Repair", "keys_to_rerun", "repair_store"]
