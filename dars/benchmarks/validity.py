"""Scoring validity report (the paper's Table 6): are the stored scores sane and reproducible?

Input: observation rows, one row per (dataset, split, query_id, model, rewrite_id, decode_id)
attempt, with at least ``response``, ``parse_ok``, ``score`` and optionally ``status`` (only rows
with status "ok" enter the rates; without the column every row does).

Output: one row per (dataset, split):

=================  =====================================================================
rows               observation rows (any status)
ok_rows            rows with status "ok"
parse_success      share of ok rows whose final answer was extracted (parse_ok)
finite             share of ok rows with a finite score (not null, NaN or ±inf)
in_unit_interval   share of ok rows with 0 ≤ score ≤ 1
score_type         share of ok rows whose score has the task's type: exactly 0 or 1 for task
                   types with binary scores (mc, math), any value in [0, 1] for those with
                   partial credit (span); null when the task type is unknown
rescored           ok rows whose item was found and were scored again
rescore_agreement  share of rescored rows where the new score equals the stored one (1e-9)
rescore_diffs      number of rescored rows that disagree
duplicate_keys     rows beyond the first for a repeated observation key (should be 0)
=================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from dars.benchmarks.base import TASK_TYPES, Benchmark, Item, get, get_task_type

KEY = ("dataset", "split", "query_id", "model", "rewrite_id", "decode_id")
REQUIRED = (*KEY, "response", "parse_ok", "score")
TOLERANCE = 1e-9


def _task_types(
    datasets: Sequence[str],
    items: Mapping[str, Sequence[Item]] | None,
    benchmarks: Mapping[str, Benchmark],
) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for ds in datasets:
        if items and items.get(ds):
            out[ds] = items[ds][0].task_type
        elif ds in benchmarks:
            out[ds] = benchmarks[ds].task_type or None
        else:
            out[ds] = None
    return out


def _rescore(
    ok: pl.DataFrame,
    items: Mapping[str, Sequence[Item]],
    benchmarks: Mapping[str, Benchmark],
) -> pl.Series:
    """New score per ok row (null when the item, its scorer or the response is unknown). Identical
    (dataset, query_id, response) triples are scored once."""
    by_id = {ds: {it.query_id: it for it in its} for ds, its in items.items()}
    cache: dict[tuple[str, str, str], float] = {}
    values: list[float | None] = []
    for ds, qid, response in ok.select("dataset", "query_id", "response").iter_rows():
        item = by_id.get(ds, {}).get(qid)
        bench = benchmarks.get(ds)
        # Nothing to rescore without the item, a scorer (a registered task type) or a response
        # (imported generations may come with scores only).
        if item is None or bench is None or item.task_type not in TASK_TYPES or response is None:
            values.append(None)
            continue
        key = (ds, qid, response or "")
        if key not in cache:
            cache[key] = bench.score(response or "", item).value
        values.append(cache[key])
    return pl.Series("rescore", values, dtype=pl.Float64)


def scoring_validity(
    obs: pl.DataFrame,
    items: Mapping[str, Sequence[Item]] | None = None,
    *,
    benchmarks: Mapping[str, Benchmark] | None = None,
) -> pl.DataFrame:
    """Scoring validity per (dataset, split); see the module docstring for every column.

    ``items`` maps a dataset name to its items (for rescoring and the task type);
    ``benchmarks`` maps a dataset name to the benchmark that scores it (default: the registered
    benchmark of that name, when there is one). Without items nothing is rescored and
    ``rescore_agreement`` is null.
    """
    missing = [c for c in REQUIRED if c not in obs.columns]
    if missing:
        raise ValueError(f"observation frame lacks column(s) {missing}; has {obs.columns}")
    datasets = sorted(obs.get_column("dataset").unique().to_list())
    benches: dict[str, Benchmark] = dict(benchmarks or {})
    for ds in datasets:
        if ds not in benches:
            try:
                benches[ds] = get(ds)
            except KeyError:
                pass
    task_of = _task_types(datasets, items, benches)

    df = obs.with_columns(
        pl.col("score").cast(pl.Float64),
        pl.col("parse_ok").cast(pl.Boolean),
        (pl.col("status") == "ok" if "status" in obs.columns else pl.lit(True)).alias("_ok"),
        pl.col("dataset")
        .replace_strict(task_of, default=None, return_dtype=pl.String)
        .alias("_task"),
    )
    ok = df.filter(pl.col("_ok"))
    if items:
        ok = ok.with_columns(_rescore(ok, items, benches))
    else:
        ok = ok.with_columns(pl.lit(None, dtype=pl.Float64).alias("rescore"))

    s = pl.col("score")
    finite = s.is_not_null() & s.is_finite()
    in_unit = finite & (s >= 0.0) & (s <= 1.0)
    binary = in_unit & ((s == 0.0) | (s == 1.0))
    known = sorted({t for t in task_of.values() if t is not None and t in TASK_TYPES})
    binary_tasks = [t for t in known if get_task_type(t).binary_scores]
    partial_tasks = [t for t in known if not get_task_type(t).binary_scores]
    typed = (
        pl.when(pl.col("_task").is_in(binary_tasks))
        .then(binary)
        .when(pl.col("_task").is_in(partial_tasks))
        .then(in_unit)
        .otherwise(None)
    )
    rescored = pl.col("rescore").is_not_null()
    agree = rescored & ((pl.col("rescore") - s).abs() <= TOLERANCE).fill_null(False)

    rates = ok.group_by("dataset", "split").agg(
        pl.len().alias("ok_rows"),
        pl.col("parse_ok").fill_null(False).mean().alias("parse_success"),
        finite.mean().alias("finite"),
        in_unit.mean().alias("in_unit_interval"),
        typed.cast(pl.Float64).mean().alias("score_type"),
        rescored.sum().alias("rescored"),
        agree.sum().alias("_agree"),
    )
    counts = df.group_by("dataset", "split").agg(
        pl.len().alias("rows"),
        (pl.len() - pl.struct(list(KEY)).n_unique()).alias("duplicate_keys"),
    )
    out = counts.join(rates, on=["dataset", "split"], how="left").with_columns(
        pl.col("ok_rows").fill_null(0),
        pl.col("rescored").fill_null(0),
        pl.col("_agree").fill_null(0),
    )
    out = out.with_columns(
        pl.when(pl.col("rescored") > 0)
        .then(pl.col("_agree") / pl.col("rescored"))
        .otherwise(None)
        .alias("rescore_agreement"),
        (pl.col("rescored") - pl.col("_agree")).alias("rescore_diffs"),
    )
    cols = [
        "dataset", "split", "rows", "ok_rows", "parse_success", "finite", "in_unit_interval",
        "score_type", "rescored", "rescore_agreement", "rescore_diffs", "duplicate_keys",
    ]  # fmt: skip
    return out.select(
        *[
            pl.col(c).cast(pl.Int64)
            if c in {"rows", "ok_rows", "rescored", "rescore_diffs", "duplicate_keys"}
            else pl.col(c)
            for c in cols
        ]
    ).sort("dataset", "split")
