"""The diagnostics experiment (the paper's Fig 2 and label recovery).

Results (long frames; views are ``test_rewrite`` and ``test_decode``):

``diagnostics``
    the supervise stage's Figure-2 metrics of every dataset, stacked (one row per (dataset,
    metric), and per definition for winner flip and single-vs-DA disagreement: columns
    :data:`~dars.supervision.diagnostics.DIAGNOSTICS_SCHEMA`, ``is_default`` marking the
    configured definition's rows);
``single_shot_distribution``
    the test utility of every single-shot draw of every family (Figure 2c);
``recovery``
    label recovery against the simulator's ground truth, stacked over the datasets whose
    supervise stage computed it (simulated pools only). When no dataset has it, the table is
    not produced, so a ``recovery`` result of an earlier run is removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from dars.evaluation import plots
from dars.evaluation.document import DASH, Document, ReportRun, ci, fmt, text_table
from dars.evaluation.experiments.base import (
    ROUTES,
    VIEW_UTILITIES,
    ExperimentSpec,
    Inputs,
    MissingInputError,
    StaleInputError,
    View,
    register_experiment,
    supervision,
)
from dars.evaluation.metrics import router_utilities
from dars.evaluation.paper import paper_figures
from dars.supervision.diagnostics import DEFINITIONS, DIAGNOSTICS_SCHEMA, SINGLE_SHOT_METRICS

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = [
    "DIAGNOSTICS_COLUMNS",
    "RECOVERY_COLUMNS",
    "SINGLE_SHOT_DISTRIBUTION_COLUMNS",
    "SPEC",
    "default_definition",
    "definition_label",
    "diagnostics_table",
    "recovery_table",
    "single_shot_distribution",
    "stack_supervision",
    "with_definitions",
]

DIAGNOSTICS_COLUMNS = DIAGNOSTICS_SCHEMA
SINGLE_SHOT_DISTRIBUTION_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "draw": pl.Int32,
    "U": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
}
RECOVERY_COLUMNS = {
    "dataset": pl.String,
    "supervision": pl.String,
    "k": pl.Int32,
    "m": pl.Int32,
    "recovery": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "regret": pl.Float64,
    "n_queries": pl.Int64,
    "n_labels": pl.Int64,
}
DIAGNOSTICS = supervision("diagnostics")
RECOVERY = supervision("recovery", optional=True)


# ------------------------------------------------------------------------------------------------
# compute
# ------------------------------------------------------------------------------------------------
def stack_supervision(
    tables: Sequence[pl.DataFrame], columns: Mapping[str, Any], what: str
) -> pl.DataFrame:
    """One frame from per-dataset supervision tables: the rows of every table, in the given
    order, with exactly ``columns`` (name → dtype); ValueError naming ``what`` and the lacking
    columns when a table does not have them."""
    parts = []
    for t in tables:
        absent = [c for c in columns if c not in t.columns]
        if absent:
            ds = t["dataset"][0] if "dataset" in t.columns and t.height else "?"
            raise ValueError(f"{what} table of dataset {ds!r} lacks column(s) {absent}")
        parts.append(t.select([pl.col(c).cast(dtype) for c, dtype in columns.items()]))
    if not parts:
        return pl.DataFrame(schema=dict(columns))
    return pl.concat(parts, how="vertical")


def single_shot_distribution(
    view_utils: Mapping[str, pl.DataFrame], routes: Mapping[tuple[str, str], pl.DataFrame]
) -> pl.DataFrame:
    """Test utility of every single-shot router draw — the distribution of Figure 2c.

    ``view_utils``: ``{dataset: view_utilities rows}``; ``routes``: ``{(dataset, family):
    single-shot routes.parquet rows}`` (S draws each). One row per (dataset, view, family, draw)
    with :data:`SINGLE_SHOT_DISTRIBUTION_COLUMNS`: ``U``/``Q``/``C`` = mean over the view's test
    queries of the utility / quality / normalised cost of the model draw ``draw`` routes each
    query to. Sorted by dataset, view, family, draw.
    """
    parts = []
    for (dataset, family), r in routes.items():
        if dataset not in view_utils:
            raise ValueError(f"routes of ({dataset!r}, {family!r}) but no view utilities for it")
        ru = router_utilities(r, view_utils[dataset], dataset=dataset)
        parts.append(ru.with_columns(family=pl.lit(family, dtype=pl.String)))
    schema = SINGLE_SHOT_DISTRIBUTION_COLUMNS
    if not parts:
        return pl.DataFrame(schema=schema)
    return (
        pl.concat(parts, how="vertical")
        .select([pl.col(c).cast(dtype) for c, dtype in schema.items()])
        .sort("dataset", "view", "family", "draw")
    )


def compute(inputs: Inputs, _exp: Experiment) -> dict[str, Any]:
    """Figure 2 and label recovery for every benchmark. Every dataset needs single-shot routes
    of at least one family (:class:`MissingInputError` naming ``dars train --supervision
    single_shot`` otherwise)."""
    tables = inputs[DIAGNOSTICS]
    recovered = inputs[RECOVERY]
    all_routes = inputs[ROUTES]
    routes: dict[tuple[str, str], pl.DataFrame] = {}
    for ds, table in tables.items():
        if "definition" not in table.columns:
            raise StaleInputError(
                f"the diagnostics table of dataset {ds!r} has one definition of winner flip and "
                "single-vs-DA disagreement (no `definition` column: written by an older "
                "version); rerun `dars supervise` to compute both",
                [(DIAGNOSTICS, ds)],
            )
        single = {f: r for (d, f, s), r in all_routes.items() if d == ds and s == "single_shot"}
        if not single:
            raise MissingInputError(
                f"no single-shot routes for dataset {ds!r}; train them with "
                "`dars train --supervision single_shot`",
                [(ROUTES, None)],
            )
        routes.update({(ds, f): r for f, r in single.items()})
    out: dict[str, Any] = {
        "diagnostics": stack_supervision(list(tables.values()), DIAGNOSTICS_COLUMNS, "diagnostics"),
        "single_shot_distribution": single_shot_distribution(inputs[VIEW_UTILITIES], routes),
    }
    if recovered:
        recovery = stack_supervision(list(recovered.values()), RECOVERY_COLUMNS, "recovery")
        out["recovery"] = (recovery, {"datasets": list(recovered)})
    return out


# ------------------------------------------------------------------------------------------------
# report section and terminal view
# ------------------------------------------------------------------------------------------------
def with_definitions(diagnostics: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    """``(diagnostics, upgraded)``: a ``diagnostics`` result with the ``definition`` and
    ``is_default`` columns. A result written before there were two definitions lacks them; its
    single-shot metrics were the draw-based ones, so they get ``definition = "draws"`` (every
    row default) and ``upgraded`` is True."""
    if "definition" in diagnostics.columns and "is_default" in diagnostics.columns:
        return diagnostics, False
    single = pl.col("metric").is_in(SINGLE_SHOT_METRICS)
    upgraded = diagnostics.with_columns(
        definition=pl.when(single).then(pl.lit("draws")).otherwise(pl.lit(None, pl.String)),
        is_default=pl.lit(True),
    )
    return upgraded.select([c for c in DIAGNOSTICS_COLUMNS if c in upgraded.columns]), True


def default_definition(diagnostics: pl.DataFrame) -> str | None:
    """The definition the ``is_default`` rows of a ``diagnostics`` result use (None when no
    single-shot metric is present)."""
    names = (
        diagnostics.filter(pl.col("is_default") & pl.col("definition").is_not_null())
        .get_column("definition")
        .unique(maintain_order=True)
        .to_list()
    )
    return names[0] if names else None


def definition_label(definition: str | None, default: str | None) -> str:
    """How a row's definition is shown: "—" for the metrics without one, the default marked."""
    if definition is None:
        return DASH
    return f"{definition} (default)" if definition == default else definition


def diagnostics_table(diagnostics: pl.DataFrame, mapping: Mapping[str, str | None]) -> pl.DataFrame:
    """The diagnostics of Fig 2 as display strings: one row per (dataset, metric, definition)
    of the ``diagnostics`` result, in its order (both definitions of a metric on adjacent rows),
    with the definition ("—" for the metrics that have none; the default marked), value, 95%
    CI, n_queries, n_units and the paper's value for the dataset of the same task type ("—"
    where the paper states none, and on rows of a definition other than the paper's, which its
    numbers do not measure)."""
    diagnostics, _ = with_definitions(diagnostics)
    default = default_definition(diagnostics)
    paper = paper_figures()["diagnostics"]
    rows = []
    for r in diagnostics.iter_rows(named=True):
        p = mapping.get(r["dataset"])
        comparable = r["definition"] in (None, "paper")
        pv = paper.get(p, {}).get(r["metric"]) if p and comparable else None
        # Variances are small numbers: three decimals would print most of them as 0.0xx.
        digits = 4 if r["metric"] in plots.VARIANCE_METRICS else 3
        rows.append(
            {
                "dataset": r["dataset"],
                "metric": r["metric"],
                "definition": definition_label(r["definition"], default),
                "value": fmt(r["value"], digits),
                "95% CI": ci(r["ci_low"], r["ci_high"], digits),
                "n_queries": fmt(r["n_queries"]),
                "n_units": fmt(r["n_units"]),
                "paper": f"{fmt(float(pv))} ({p})" if pv is not None else DASH,
            }
        )
    return text_table(
        rows,
        ["dataset", "metric", "definition", "value", "95% CI", "n_queries", "n_units", "paper"],
    )


def _definitions_text(present: Sequence[str], default: str | None) -> list[str]:
    """One paragraph per definition present: its name, whether it is the default, its one
    sentence."""
    out = []
    for name in [d for d in DEFINITIONS if d in present]:
        mark = " (default: Fig 2a and the supervise summary use it)" if name == default else ""
        out.append(f"**{name}**{mark}: {DEFINITIONS[name].text}")
    return out


def _paper_diagnostics(mapping: Mapping[str, str | None]) -> pl.DataFrame:
    paper = paper_figures()["diagnostics"]
    rows = [
        {"dataset": ours, "metric": metric, "value": float(value)}
        for ours, p in mapping.items()
        if p
        for metric, value in paper.get(p, {}).items()
    ]
    return pl.DataFrame(
        rows, schema={"dataset": pl.String, "metric": pl.String, "value": pl.Float64}
    )


def recovery_table(recovery: pl.DataFrame, datasets: Sequence[str] = ()) -> pl.DataFrame:
    """Label recovery against the simulator's ground truth, as display strings: one row per
    (dataset, supervision) of the ``recovery`` result, in its row order within a dataset
    (datasets in ``datasets`` order first), with the k×m sub-protocol ("—": the full protocol
    or an ablation), the recovery rate and its 95% CI, the mean regret and the counts."""
    rank = {d: i for i, d in enumerate(datasets)}
    ordered = recovery.with_row_index("_i").sort(
        pl.col("dataset").replace_strict(rank, default=len(rank), return_dtype=pl.Int64),
        "dataset",
        "_i",
    )
    rows = [
        {
            "dataset": r["dataset"],
            "supervision": r["supervision"],
            "k×m": DASH if r["k"] is None or r["m"] is None else f"{r['k']}×{r['m']}",
            "recovery": fmt(r["recovery"]),
            "95% CI": ci(r["ci_low"], r["ci_high"]),
            "regret": fmt(r["regret"], 4),
            "n_queries": fmt(r["n_queries"]),
            "n_labels": fmt(r["n_labels"]),
        }
        for r in ordered.iter_rows(named=True)
    ]
    return text_table(
        rows,
        ["dataset", "supervision", "k×m", "recovery", "95% CI", "regret", "n_queries", "n_labels"],
    )


def section(doc: Document, run: ReportRun) -> None:
    """Fig 2a–c with the diagnostics table beside the paper's values, then label recovery."""
    diag = run.result(doc, "diagnostics")
    if diag is not None:
        diag, upgraded = with_definitions(diag)
        default = default_definition(diag)
        doc.p(
            "How unstable single sampled outcomes are as training labels, on the training "
            "queries: outcome instability (share of (query, model) cells whose sampled outcomes "
            "disagree), winner flip rate (share of queries whose best model is not the same at "
            "every observation index), single-shot vs distribution-aware label disagreement "
            "(share of (query, index) pairs whose single-shot label differs from the "
            "distribution-aware one), and the split of quality variance into input-side "
            "(across rewrites) and output-side (across decodes). Winner flip and disagreement "
            "depend on what an observation index is; both definitions are shown:"
        )
        present = diag["definition"].drop_nulls().unique().to_list()
        for text in _definitions_text(present, default):
            doc.p(text)
        if upgraded:
            doc.note(
                "This `diagnostics` result was written by an older version of dars, with the "
                "`draws` definition only; rerun `dars supervise` and `dars experiment "
                "diagnostics` for the paper's definition beside it."
            )
        shown = diag.filter(pl.col("is_default"))
        if shown.filter(pl.col("metric").is_in(plots.INSTABILITY_METRICS)).height:
            doc.figure(
                "fig2a_instability",
                plots.instability_bars(
                    shown, datasets=run.datasets, paper=_paper_diagnostics(run.paper)
                ),
                "Fig 2a: label-instability metrics per dataset (95% bootstrap CI over queries), "
                f"winner flip and disagreement under the `{default}` definition; black ticks: "
                "the paper's values (its own definition) for the dataset of the same task type.",
            )
        else:
            doc.note("No instability metrics in `diagnostics`; Fig 2a not drawn.")
        if shown.filter(pl.col("metric").is_in(plots.VARIANCE_METRICS)).height:
            doc.figure(
                "fig2b_variance",
                plots.variance_bars(shown, datasets=run.datasets),
                "Fig 2b: input-side vs output-side variance of quality per dataset (95% CI).",
            )
        else:
            doc.note("No variance metrics in `diagnostics`; Fig 2b not drawn.")
        doc.h(3, "Diagnostics table (ours vs the paper's)")
        doc.table(
            diagnostics_table(diag, run.paper),
            caption="Winner flip and disagreement under each definition on adjacent rows "
            "(default marked); the paper's values stand beside its own definition.",
        )
        doc.p(f"Paper: {paper_figures()['diagnostics']['variance_split']}.")
    dist = run.result(doc, "single_shot_distribution")
    if dist is not None and run.results.get("main") is None:
        doc.note("Fig 2c marks the DARS routers from result `main`, which is missing; not drawn.")
    elif dist is not None:
        doc.figure(
            "fig2c_single_shot",
            plots.single_shot_violins(dist, run.main, datasets=run.datasets),
            "Fig 2c: distribution of test utility over the single-shot routers of each family "
            "(one per draw), with the DARS router (red diamond) and the best fixed model "
            "(dashed).",
        )
    doc.h(3, "Label recovery (simulated pool: ground truth known)")
    ctx = run.context
    if run.results.get("recovery") is None and ctx is not None and not ctx.get("simulated"):
        doc.p("Not applicable: a real pool has no ground-truth capability to recover.")
        return
    rec = run.result(doc, "recovery")
    if rec is not None:
        doc.p(
            "Share of training queries whose label is a truly best model under the simulator's "
            "ground-truth utility (single-shot: mean over draws), per supervision and "
            "k×m sub-protocol; regret is the mean true-utility gap between the best model and "
            "the label."
        )
        doc.table(recovery_table(rec, run.datasets))


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    """The diagnostics metrics, one row per (metric, definition) — "—" for the metrics without
    one, the default marked — and one column per dataset."""
    diag = tables["diagnostics"]
    if diag.height:
        default = default_definition(diag)
        label = (
            pl.when(pl.col("definition").is_null())
            .then(pl.lit(DASH))
            .when(pl.col("definition") == default)
            .then(pl.col("definition") + " (default)")
            .otherwise(pl.col("definition"))
        )
        diag = diag.with_columns(definition=label).pivot(
            on="dataset", index=["metric", "definition"], values="value", sort_columns=False
        )
    return [View("diagnostics", diag)]


SPEC = register_experiment(
    ExperimentSpec(
        name="diagnostics",
        help="Label instability, variance split, single-shot router utility distribution "
        "and label recovery (Fig 2) → results/diagnostics, single_shot_distribution, recovery.",
        title="Diagnostics",
        order=30,
        inputs=(DIAGNOSTICS, RECOVERY, VIEW_UTILITIES, ROUTES),
        compute=compute,
        tables={
            "diagnostics": DIAGNOSTICS_COLUMNS,
            "single_shot_distribution": SINGLE_SHOT_DISTRIBUTION_COLUMNS,
            "recovery": RECOVERY_COLUMNS,
        },
        section=section,
        view=view,
        figures=("fig2a_instability", "fig2b_variance", "fig2c_single_shot"),
    )
)
