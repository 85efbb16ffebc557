"""The run manifest: which observations and rewrites an experiment expects, and how far it got.

Pure functions, no I/O. ``build_plan`` expands the protocol into one row per expected observation
key; ``expected_rewrites`` lists the rewrites the decode stage will need; ``status`` compares the
plan with what the store holds (``dars.storage.scan_observations``).

Protocol (``Experiment.protocol``), per (query, model):

* train split, view ``train``: rewrites ``0..train_rewrites-1`` (plus the original, rewrite_id
  -1, when ``train_include_original``) × decodes ``0..train_decodes-1``;
* test split, view ``test_rewrite``: rewrites ``0..test_rewrites-1`` × decodes
  ``0..test_rewrite_decodes-1``;
* test split, view ``test_decode``: the original (-1) × decodes ``0..test_decodes-1``.

A query's shard is its position in its split's item list // ``experiment.shard_size``; every key
of that query (all models, views, rewrites, decodes) and its rewrites go to that shard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from dars.benchmarks.base import Item
    from dars.config import Experiment

SPLIT_ORDER: tuple[str, ...] = ("train", "test")
KEY: tuple[str, ...] = ("dataset", "split", "query_id", "model", "rewrite_id", "decode_id")
PARTITION: tuple[str, ...] = ("dataset", "split", "model", "shard")
PLAN_SCHEMA: dict[str, Any] = {
    "dataset": pl.String,
    "split": pl.String,
    "query_id": pl.String,
    "model": pl.String,
    "view": pl.String,
    "rewrite_id": pl.Int32,
    "decode_id": pl.Int32,
    "shard": pl.Int32,
}
REWRITE_PLAN_SCHEMA: dict[str, Any] = {
    "dataset": pl.String,
    "split": pl.String,
    "query_id": pl.String,
    "rewrite_id": pl.Int32,
    "shard": pl.Int32,
}
STATUS_SCHEMA: dict[str, Any] = {
    "dataset": pl.String,
    "split": pl.String,
    "model": pl.String,
    "shard": pl.Int32,
    "expected": pl.Int64,
    "done": pl.Int64,
    "failed": pl.Int64,
    "missing": pl.Int64,
}


def _cells(experiment: Experiment, split: str) -> list[tuple[str, int, int]]:
    """(view, rewrite_id, decode_id) triples every (query, model) of ``split`` needs."""
    p = experiment.protocol
    if split == "train":
        rewrites = ([-1] if p.train_include_original else []) + list(range(p.train_rewrites))
        return [("train", r, d) for r in rewrites for d in range(p.train_decodes)]
    return [
        ("test_rewrite", r, d)
        for r in range(p.test_rewrites)
        for d in range(p.test_rewrite_decodes)
    ] + [("test_decode", -1, d) for d in range(p.test_decodes)]


def _queries(
    experiment: Experiment, splits: Mapping[str, Mapping[str, Sequence[Item]]]
) -> pl.DataFrame:
    """One row per (dataset, split, query) of the collected benchmarks (imported datasets have
    nothing to collect): query_id, position in the split, shard."""
    wanted = [b.name for b in experiment.collected]
    imported = {b.name for b in experiment.benchmarks} - set(wanted)
    missing = [d for d in wanted if d not in splits]
    extra = [d for d in splits if d not in wanted and d not in imported]
    if missing or extra:
        raise ValueError(
            f"split items do not match the experiment's benchmarks {wanted}: "
            f"missing {missing}, not in experiment {extra}"
        )
    schema = {"dataset": pl.String, "split": pl.String, "query_id": pl.String, "pos": pl.Int64}
    frames = [pl.DataFrame(schema=schema)]  # no collected benchmark: nothing is planned
    for d in wanted:
        by_split = splits[d]
        unknown = [s for s in by_split if s not in SPLIT_ORDER]
        if unknown:
            raise ValueError(f"dataset {d!r}: unknown split(s) {unknown}; allowed: train, test")
        seen: dict[str, str] = {}
        for s in SPLIT_ORDER:
            ids = [it.query_id for it in by_split.get(s, [])]
            for qid in ids:
                if qid in seen:
                    raise ValueError(
                        f"dataset {d!r}: query_id {qid!r} appears twice (in {seen[qid]} and {s})"
                    )
                seen[qid] = s
            frames.append(
                pl.DataFrame(
                    {
                        "dataset": [d] * len(ids),
                        "split": [s] * len(ids),
                        "query_id": ids,
                        "pos": list(range(len(ids))),
                    },
                    schema=schema,
                )
            )
    return pl.concat(frames).with_columns(
        (pl.col("pos") // experiment.shard_size).cast(pl.Int32).alias("shard")
    )


def build_plan(
    experiment: Experiment, splits: Mapping[str, Mapping[str, Sequence[Item]]]
) -> pl.DataFrame:
    """Every observation key the experiment expects.

    ``splits``: dataset name -> {"train": [Item], "test": [Item]} (as from ``split_items``), one
    entry per benchmark of the experiment; the item order fixes the shards.

    Returns one row per expected observation with columns ``PLAN_SCHEMA``: dataset, split,
    query_id, model, view, rewrite_id, decode_id and the shard the key is written to. Rows are
    ordered by dataset (experiment order), split (train, test), model (pool order), shard, query
    position, view, rewrite_id, decode_id. Number of rows per dataset:
    n_train × models × (K [+1 with the original]) × M + n_test × models × (K_test × M_test + M_dec).
    """
    queries = _queries(experiment, splits)
    models = pl.DataFrame(
        {"model": experiment.pool.names, "model_pos": range(len(experiment.pool.names))},
        schema={"model": pl.String, "model_pos": pl.Int64},
    )
    frames = []
    for s in SPLIT_ORDER:
        cells = _cells(experiment, s)
        cell_df = pl.DataFrame(
            {
                "view": [c[0] for c in cells],
                "rewrite_id": [c[1] for c in cells],
                "decode_id": [c[2] for c in cells],
                "cell_pos": range(len(cells)),
            },
            schema={
                "view": pl.String,
                "rewrite_id": pl.Int32,
                "decode_id": pl.Int32,
                "cell_pos": pl.Int64,
            },
        )
        frames.append(
            queries.filter(pl.col("split") == s)
            .join(models, how="cross")
            .join(cell_df, how="cross")
        )
    dataset_pos = {b.name: i for i, b in enumerate(experiment.collected)}
    return (
        pl.concat(frames)
        .with_columns(
            pl.col("dataset").replace_strict(dataset_pos, return_dtype=pl.Int64).alias("ds_pos"),
            (pl.col("split") != "train").alias("split_pos"),
        )
        .sort(["ds_pos", "split_pos", "model_pos", "shard", "pos", "cell_pos"])
        .select(list(PLAN_SCHEMA))
    )


def expected_rewrites(
    experiment: Experiment, splits: Mapping[str, Mapping[str, Sequence[Item]]]
) -> pl.DataFrame:
    """Every rewrite the experiment needs: one row per (dataset, split, query_id, rewrite_id).

    Train queries need ``train_rewrites`` rewrites, test queries ``test_rewrites`` (none when the
    protocol has no test rewrite view). Columns ``REWRITE_PLAN_SCHEMA`` (with the shard), ordered
    like the plan.
    """
    p = experiment.protocol
    n = {"train": p.train_rewrites, "test": p.test_rewrites}
    queries = _queries(experiment, splits)
    frames = []
    for s in SPLIT_ORDER:
        ids = pl.DataFrame({"rewrite_id": range(n[s])}, schema={"rewrite_id": pl.Int32})
        frames.append(queries.filter(pl.col("split") == s).join(ids, how="cross"))
    return pl.concat(frames).select(list(REWRITE_PLAN_SCHEMA))


def status(plan: pl.DataFrame, observed: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Progress of the plan given what the store holds.

    ``plan``: as from :func:`build_plan`. ``observed``: observation rows (at least the key
    columns and ``status``), e.g. ``scan_observations(root)``. A planned key is *done* if some
    observed row for it has status ok, *failed* if it only has error rows, *missing* otherwise;
    observed rows outside the plan are ignored.

    Returns one row per (dataset, split, model, shard) of the plan, in plan order, with
    ``expected``, ``done``, ``failed``, ``missing`` (done + failed + missing = expected), then
    one total row whose dataset, split, model and shard are null.
    """
    key = list(KEY)
    obs = (
        observed.lazy()
        .select(*key, "status")
        .with_columns(pl.col("rewrite_id").cast(pl.Int32), pl.col("decode_id").cast(pl.Int32))
        .group_by(key)
        .agg((pl.col("status") == "ok").any().alias("__ok"))
    )
    # Joins do not promise to keep row order, so plan order is restored from a row index.
    per = (
        plan.lazy()
        .select(*key, "shard")
        .with_row_index("__i")
        .join(obs, on=key, how="left")
        .group_by(list(PARTITION))
        .agg(
            pl.col("__i").min(),
            pl.len().cast(pl.Int64).alias("expected"),
            pl.col("__ok").fill_null(False).sum().cast(pl.Int64).alias("done"),
            (pl.col("__ok") == False).sum().cast(pl.Int64).alias("failed"),  # noqa: E712
            pl.col("__ok").is_null().sum().cast(pl.Int64).alias("missing"),
        )
        .sort("__i")
        .drop("__i")
        .collect()
        .cast(STATUS_SCHEMA)  # type: ignore[arg-type]
    )
    total = per.select(pl.col("expected", "done", "failed", "missing").sum()).with_columns(
        pl.lit(None, pl.String).alias("dataset"),
        pl.lit(None, pl.String).alias("split"),
        pl.lit(None, pl.String).alias("model"),
        pl.lit(None, pl.Int32).alias("shard"),
    )
    return pl.concat([per, total.select(per.columns).cast(STATUS_SCHEMA)])  # type: ignore[arg-type]


# The key columns a rerun can be narrowed by (``dars rerun --failed --dataset/--model/--split``).
FILTER_FIELDS: tuple[str, ...] = ("dataset", "model", "split")


def key_filter(
    experiment: Experiment,
    *,
    dataset: Sequence[str] = (),
    model: Sequence[str] = (),
    split: Sequence[str] = (),
) -> dict[str, list[str]]:
    """The filter that narrows a collection to some datasets, models and splits, checked
    against ``experiment``.

    Each argument is a list of values as typed (repeated options and/or comma lists:
    ``["a,b", "c"]`` is a, b, c); an empty one does not narrow that field. Returns
    ``{field: [values]}`` (fields of ``FILTER_FIELDS`` that narrow, values deduplicated in the
    order given), ``{}`` for everything; :func:`filter_keys` applies it. Raises ``ValueError``
    in one line naming each unknown value and listing the allowed ones (the config's datasets,
    its pool, ``train``/``test``).
    """
    allowed = {
        "dataset": [b.name for b in experiment.benchmarks],
        "model": list(experiment.pool.names),
        "split": list(SPLIT_ORDER),
    }
    given = {"dataset": dataset, "model": model, "split": split}
    only: dict[str, list[str]] = {}
    problems = []
    for name in FILTER_FIELDS:
        values = [v.strip() for raw in given[name] for v in raw.split(",") if v.strip()]
        values = list(dict.fromkeys(values))
        unknown = [v for v in values if v not in allowed[name]]
        if unknown:
            problems.append(
                f"unknown {name} {', '.join(map(repr, unknown))} (allowed: "
                f"{', '.join(allowed[name])})"
            )
        elif values:
            only[name] = values
    if problems:
        raise ValueError("; ".join(problems))
    return only


def filter_keys(
    frame: pl.DataFrame | pl.LazyFrame, only: Mapping[str, Sequence[str]] | None
) -> Any:
    """The rows of ``frame`` (a plan, a rewrite plan, observations, a budget: any frame with
    some of the ``FILTER_FIELDS`` columns) whose values pass ``only`` (from :func:`key_filter`;
    None or ``{}`` keeps every row). A field the frame has no column for does not narrow it:
    rewrites have no model, and every model's decodes need them. Same frame type back."""
    columns = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    keep = [pl.col(c).is_in(list(v)) for c, v in (only or {}).items() if c in columns]
    return frame.filter(*keep) if keep else frame
