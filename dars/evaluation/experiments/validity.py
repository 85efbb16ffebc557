"""The validity experiment (the paper's Tables 5 and 6): are the rewrites and the scores sane?

Results:

``rewrite_validity``
    one row per (dataset, split) of the rewrite store
    (:func:`~dars.benchmarks.rewrite_checks.rewrite_validity_table`; the checks were computed by
    ``dars collect`` when the rewrites were stored);
``scoring_validity``
    one row per (dataset, split) of the pool's observations
    (:func:`~dars.benchmarks.validity.scoring_validity`), every ok observation scored again
    with the benchmark's scorer against its item (identical (dataset, query, response) triples
    once).

A dataset without observations is an error (``dars collect``); one whose observations use
rewrites (``rewrite_id >= 0``) without stored rewrites too. Decode-only data (e.g. imported with
``dars import``) has no rewrites and no Table-5 row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl

from dars.benchmarks.rewrite_checks import rewrite_validity_table
from dars.benchmarks.validity import scoring_validity
from dars.evaluation.document import DASH, Document, ReportRun, fmt, text_table
from dars.evaluation.experiments.base import (
    BENCHMARKS,
    ITEMS,
    OBSERVATIONS,
    REWRITES,
    ExperimentSpec,
    Inputs,
    MissingInputError,
    View,
    register_experiment,
)
from dars.evaluation.paper import paper_columns, paper_figures

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = [
    "REWRITE_VALIDITY_COLUMNS",
    "SCORING_VALIDITY_COLUMNS",
    "SPEC",
    "TABLE5_COLUMNS",
    "TABLE6_COLUMNS",
    "validity_table",
]

#: Schema of the ``rewrite_validity`` result.
REWRITE_VALIDITY_COLUMNS = {
    "dataset": pl.String,
    "split": pl.String,
    "records": pl.Int64,
    "rewrites": pl.Int64,
    "complete": pl.Float64,
    "orig_dup": pl.Float64,
    "rew_dup": pl.Float64,
    "sim_mean": pl.Float64,
    "sim_p05": pl.Float64,
    "num_preserved": pl.Float64,
    "struct_pass": pl.Float64,
    "review_flag": pl.Float64,
}
#: Schema of the ``scoring_validity`` result.
SCORING_VALIDITY_COLUMNS = {
    "dataset": pl.String,
    "split": pl.String,
    "rows": pl.Int64,
    "ok_rows": pl.Int64,
    "parse_success": pl.Float64,
    "finite": pl.Float64,
    "in_unit_interval": pl.Float64,
    "score_type": pl.Float64,
    "rescored": pl.Int64,
    "rescore_agreement": pl.Float64,
    "rescore_diffs": pl.Int64,
    "duplicate_keys": pl.Int64,
}
#: The columns of Tables 5 and 6 in the report.
TABLE5_COLUMNS = tuple(REWRITE_VALIDITY_COLUMNS)[2:]
TABLE6_COLUMNS = tuple(SCORING_VALIDITY_COLUMNS)[2:]


def compute(inputs: Inputs, exp: Experiment) -> dict[str, pl.DataFrame]:
    """Tables 5 and 6 for the experiment's benchmarks and pool (see the module docstring)."""
    names = [b.name for b in exp.benchmarks]
    obs = inputs[OBSERVATIONS]
    no_obs = sorted(set(names) - set(obs["dataset"].unique().to_list()))
    if no_obs:
        raise MissingInputError(
            f"no observations of the pool for dataset(s) {no_obs}; run `dars collect`",
            [(OBSERVATIONS, None)],
        )
    rewrites = inputs[REWRITES]
    uses_rewrites = set(obs.filter(pl.col("rewrite_id") >= 0)["dataset"].unique().to_list())
    no_rewrites = sorted(uses_rewrites - set(rewrites["dataset"].unique().to_list()))
    if no_rewrites:
        raise MissingInputError(
            f"observations of dataset(s) {no_rewrites} answer rewrites, but no rewrites are "
            "stored; run `dars collect` to produce them",
            [(REWRITES, None)],
        )
    return {
        "rewrite_validity": rewrite_validity_table(rewrites).with_columns(
            pl.col("records", "rewrites").cast(pl.Int64)
        ),
        "scoring_validity": scoring_validity(obs, inputs[ITEMS], benchmarks=inputs[BENCHMARKS]),
    }


def validity_table(
    frame: pl.DataFrame,
    columns: Sequence[str],
    paper_key: str,
    mapping: Mapping[str, str | None],
) -> pl.DataFrame:
    """Table 5 or 6 as display strings: one row per (dataset, split) of the result (datasets in
    ``mapping``'s order, train before test) with
    ``columns`` (fractions with 4 decimals, counts as integers), each followed by the paper's
    row for the dataset of the same task type and the same split (source "paper (<dataset>)")
    when the paper reports one; columns the paper lacks are "—"."""
    paper = paper_figures()[paper_key]
    pidx = paper_columns(paper)
    order = {d: i for i, d in enumerate(mapping)}
    ordered = frame.sort(
        pl.col("dataset").replace_strict(order, default=len(order), return_dtype=pl.Int64),
        "dataset",
        pl.col("split").replace_strict({"train": 0, "test": 1}, default=2, return_dtype=pl.Int64),
    )
    rows = []
    for r in ordered.iter_rows(named=True):
        rows.append(
            {"dataset": r["dataset"], "split": r["split"], "source": "ours"}
            | {c: fmt(r.get(c), 4) for c in columns}
        )
        p = mapping.get(r["dataset"])
        prow = paper.get(f"{p}_{r['split']}") if p else None
        if prow is not None:
            paper_row = {"dataset": r["dataset"], "split": r["split"], "source": f"paper ({p})"}
            for c in columns:
                # YAML gives counts as int and fractions as float, so fmt prints each as ours.
                paper_row[c] = fmt(prow[pidx[c]], 4) if c in pidx else DASH
            rows.append(paper_row)
    return text_table(rows, ["dataset", "split", "source", *columns])


def section(doc: Document, run: ReportRun) -> None:
    """Tables 5 and 6, each row followed by the paper's row for the same task type and split."""
    doc.h(3, "Table 5: rewrite validity")
    frame = run.result(doc, "rewrite_validity")
    if frame is not None:
        doc.table(
            validity_table(frame, TABLE5_COLUMNS, "table5_rewrite_validity", run.paper),
            caption="Per (dataset, split): records, rewrites, share complete, duplicate shares, "
            "embedding similarity to the original (mean, 5th percentile), share of numbers "
            "preserved, structure checks passed, share flagged for review.",
        )
    doc.h(3, "Table 6: scoring validity")
    frame = run.result(doc, "scoring_validity")
    if frame is not None:
        doc.table(
            validity_table(frame, TABLE6_COLUMNS, "table6_scoring_validity", run.paper),
            caption="Per (dataset, split): observation rows, ok rows, parse success, finite and "
            "in-[0, 1] scores, score-type consistency, rescoring agreement and differences, "
            "duplicate keys.",
        )


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    """Both tables as they are (one row per (dataset, split))."""
    return [View(name, tables[name]) for name in ("rewrite_validity", "scoring_validity")]


SPEC = register_experiment(
    ExperimentSpec(
        name="validity",
        help="Rewrite and scoring validity (Tables 5 and 6) → results/rewrite_validity, "
        "results/scoring_validity.",
        title="Validity",
        order=70,
        inputs=(OBSERVATIONS, REWRITES, ITEMS, BENCHMARKS),
        compute=compute,
        tables={
            "rewrite_validity": REWRITE_VALIDITY_COLUMNS,
            "scoring_validity": SCORING_VALIDITY_COLUMNS,
        },
        section=section,
        view=view,
    )
)
