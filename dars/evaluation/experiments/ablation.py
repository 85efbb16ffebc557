"""The ablation experiment (the paper's Table 2): one router family over the Table-2 supervisions.

Result ``ablation``: one row per (dataset, view, supervision) for the family
``exp.evaluation.ablation_family``, supervisions in Table-2 order (:data:`TABLE2_SUPERVISIONS`:
single_shot and the six ablations): the router trained on that supervision, scored like ``main``
(:func:`~dars.evaluation.metrics.score_routes`). ``full_dars`` equals ``dars`` and is not
trained by default, so its own routes are used only when someone trained them, else the
``dars`` routes; the JSON twin's ``trained_supervisions`` records which trained supervision
served each (dataset, supervision) row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from dars.evaluation.document import Document, ReportRun, fmt, text_table
from dars.evaluation.experiments.base import (
    ROUTES,
    VIEW_UTILITIES,
    ExperimentSpec,
    Inputs,
    MissingInputError,
    View,
    register_experiment,
)
from dars.evaluation.metrics import (
    ROUTE_SCORE_COLUMNS,
    VIEW_SHORT,
    VIEWS,
    order_families,
    score_routes,
    view_columns,
)
from dars.evaluation.paper import paper_columns, paper_figures
from dars.routers.training import check_families
from dars.supervision.ablations import ABLATIONS

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = ["ABLATION_COLUMNS", "TABLE2_SUPERVISIONS", "SPEC", "ablation", "ablation_table"]

#: Table-2 rows, in the paper's order.
TABLE2_SUPERVISIONS: tuple[str, ...] = ("single_shot", *ABLATIONS)
ABLATION_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "supervision": pl.String,
    **{k: v for k, v in ROUTE_SCORE_COLUMNS.items() if k != "view"},
}


def ablation(
    view_utils: Mapping[str, pl.DataFrame],
    routes: Mapping[tuple[str, str], pl.DataFrame],
    *,
    family: str,
    n_boot: int,
    seed: int,
) -> pl.DataFrame:
    """The ablation of one router family over the Table-2 supervisions.

    ``view_utils``: ``{dataset: view_utilities rows}``; ``routes``: ``{(dataset, supervision):
    routes.parquet rows}`` of ``family`` trained on that supervision (supervisions from
    :data:`TABLE2_SUPERVISIONS`; ``single_shot`` routes hold every draw). Every (dataset,
    supervision) pair must be given.

    One row per (dataset, view, supervision) with :data:`ABLATION_COLUMNS`, ordered by dataset
    (as in ``view_utils``), supervision (Table-2 order), view (rewrite, then decode). U/Q/C as
    in ``main``: for ``single_shot`` the mean over the ``n_draws`` draws and ``U_std`` their
    std; for the other supervisions the router's value and ``U_low``/``U_high`` = bootstrap CI
    over test queries (``n_boot`` resamples seeded with ``seed``).
    """
    missing = [
        f"{ds}/{s}" for ds in view_utils for s in TABLE2_SUPERVISIONS if (ds, s) not in routes
    ]
    if missing:
        raise ValueError(f"ablation of {family!r}: no routes for {', '.join(missing)}")
    view_rank = {v: i for i, v in enumerate(("test_rewrite", "test_decode"))}
    rows: list[dict[str, Any]] = []
    for dataset, vu in view_utils.items():
        for supervision in TABLE2_SUPERVISIONS:
            scored = score_routes(
                routes[(dataset, supervision)],
                vu,
                dataset=dataset,
                single_shot=supervision == "single_shot",
                n_boot=n_boot,
                seed=seed,
            )
            ordered = sorted(scored.iter_rows(named=True), key=lambda r: view_rank[r["view"]])
            rows += [
                {"dataset": dataset, "family": family, "supervision": supervision, **r}
                for r in ordered
            ]
    return pl.DataFrame(rows, schema=ABLATION_COLUMNS)


def ablation_table(ablation: pl.DataFrame, datasets: Sequence[str] | None = None) -> pl.DataFrame:
    """The paper's Table 2 from ``ablation`` rows of one family.

    One row per supervision present, in Table-2 order; column ``supervision``, then
    ``<dataset>_rew`` and ``<dataset>_dec`` (test utility U in the rewrite / decode view;
    single-shot: mean over draws) for each dataset of ``datasets`` (default: those of the frame,
    sorted), then ``average`` = unweighted mean of those columns (null when one of them is missing).
    """
    need = ("dataset", "view", "family", "supervision", "U")
    absent = [c for c in need if c not in ablation.columns]
    if absent:
        raise ValueError(f"ablation frame lacks column(s) {absent}; it has {ablation.columns}")
    families = ablation["family"].unique().to_list()
    if len(families) > 1:
        raise ValueError(f"ablation frame holds several families {sorted(families)}; pass one")
    unknown = sorted(set(ablation["supervision"].to_list()) - set(TABLE2_SUPERVISIONS))
    if unknown:
        raise ValueError(
            f"unknown supervision(s) {unknown}; valid: {', '.join(TABLE2_SUPERVISIONS)}"
        )
    bad_views = sorted(set(ablation["view"].to_list()) - set(VIEWS))
    if bad_views:
        raise ValueError(f"unknown view(s) {bad_views}; valid: {', '.join(VIEWS)}")
    dup = ablation.filter(pl.struct("dataset", "view", "supervision").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise ValueError(
            f"ablation frame has several rows for dataset={r['dataset']!r}, view={r['view']!r}, "
            f"supervision={r['supervision']!r}"
        )
    if datasets is None:
        datasets = sorted(ablation["dataset"].unique().to_list())
    columns = view_columns(datasets)
    wide = ablation.with_columns(
        (pl.col("dataset") + "_" + pl.col("view").replace_strict(VIEW_SHORT)).alias("column")
    ).pivot(on="column", index="supervision", values="U", aggregate_function=None)
    order = {s: i for i, s in enumerate(TABLE2_SUPERVISIONS)}
    wide = wide.with_columns(
        [pl.lit(None, dtype=pl.Float64).alias(c) for c in columns if c not in wide.columns]
    )
    any_null = pl.any_horizontal([pl.col(c).is_null() for c in columns])
    return (
        wide.select("supervision", *columns)
        .with_columns(
            pl.when(any_null).then(None).otherwise(pl.mean_horizontal(columns)).alias("average")
        )
        .sort(pl.col("supervision").replace_strict(order, return_dtype=pl.Int64))
    )


def _trained_supervision(
    routes: Mapping[tuple[str, str, str], pl.DataFrame], dataset: str, family: str, supervision: str
) -> str:
    """The supervision whose routes serve the Table-2 row ``supervision``: ``full_dars`` falls
    back to ``dars`` unless its own router was trained."""
    if supervision == "full_dars" and (dataset, family, "full_dars") not in routes:
        return "dars"
    return supervision


def check(exp: Experiment) -> None:
    """The ablation family must be a registered router family."""
    check_families([exp.evaluation.ablation_family])


def compute(inputs: Inputs, exp: Experiment) -> dict[str, Any]:
    """Table 2 for ``exp.evaluation.ablation_family`` on every benchmark; a supervision without
    routes raises :class:`MissingInputError` naming the ``dars train`` command that trains it."""
    check(exp)
    family = exp.evaluation.ablation_family
    n_boot = exp.evaluation.n_boot
    view_utils = inputs[VIEW_UTILITIES]
    routes = inputs[ROUTES]
    # (dataset, Table-2 row) → the supervision of the router whose routes serve that row.
    trained = {
        (ds, s): _trained_supervision(routes, ds, family, s)
        for ds in view_utils
        for s in TABLE2_SUPERVISIONS
    }
    missing = {k: t for k, t in trained.items() if (k[0], family, t) not in routes}
    if missing:
        command = f"dars train --family {family} " + " ".join(
            f"--supervision {t}" for t in dict.fromkeys(missing.values())
        )
        raise MissingInputError(
            f"ablation of router family {family!r} needs routes that are not trained; train "
            f"them with `{command}`",
            [(ROUTES, (ds, family, t)) for (ds, _), t in missing.items()],
        )
    chosen = {k: routes[(k[0], family, t)] for k, t in trained.items()}
    frame = ablation(view_utils, chosen, family=family, n_boot=n_boot, seed=exp.seed)
    extras = {
        "family": family,
        "n_boot": n_boot,
        "trained_supervisions": {f"{ds}/{s}": t for (ds, s), t in trained.items()},
    }
    return {"ablation": (frame, extras)}


def _paper_table(datasets: Sequence[str], mapping: Mapping[str, str | None]) -> pl.DataFrame | None:
    t2 = paper_figures()["table2_ablation_mirt"]
    idx = paper_columns(t2)
    pairs = [(d, mapping.get(d)) for d in datasets if mapping.get(d)]
    if not pairs:
        return None
    cols = [
        (f"{p}_{short} (≙ {d})", idx[f"{p}_{short}"]) for d, p in pairs for short in ("rew", "dec")
    ]
    cols.append(("avg (paper's 6 columns)", idx["avg"]))
    rows = [
        {"supervision": s, **{name: fmt(float(t2[s][i])) for name, i in cols}}
        for s in TABLE2_SUPERVISIONS
        if s in t2
    ]
    return text_table(rows, ["supervision", *[name for name, _ in cols]])


def ordering_note(table: pl.DataFrame) -> str | None:
    """A note when the ranking of ``table`` (an :func:`ablation_table`, by ``average``) differs
    from the paper's Table 2 ranking (by its ``avg`` column), or None when they agree.

    Supervisions without an average, or absent from either ranking, are left out of both. The
    note names where ``full_dars`` ranks here (first in the paper) and the supervisions above it
    with their margin in average U.
    """
    paper_rows = paper_figures()["table2_ablation_mirt"]
    avg_at = list(paper_rows["columns"]).index("avg")
    ours = {
        r["supervision"]: r["average"]
        for r in table.iter_rows(named=True)
        if r["average"] is not None and r["supervision"] in paper_rows
    }
    paper = {s: paper_rows[s][avg_at] for s in ours}
    if len(ours) < 2:
        return None
    our_rank = sorted(ours, key=lambda s: -ours[s])
    paper_rank = sorted(paper, key=lambda s: -paper[s])
    if our_rank == paper_rank:
        return None
    text = (
        f"The ordering by average U differs from the paper's Table 2: here "
        f"{' > '.join(our_rank)}; in the paper {' > '.join(paper_rank)}."
    )
    if "full_dars" in ours and our_rank[0] != "full_dars":
        above = our_rank[: our_rank.index("full_dars")]
        margins = ", ".join(f"{s} (+{ours[s] - ours['full_dars']:.3f})" for s in above)
        text += (
            f" Full DARS ranks {our_rank.index('full_dars') + 1} of {len(our_rank)} here, below "
            f"{margins}; compare these margins with the 95 % CIs of the per-column utilities "
            "(result `ablation`, U_low/U_high) before reading an ordering into them."
        )
    return text


def section(doc: Document, run: ReportRun) -> None:
    """Table 2 per family of the result, then the paper's Table 2."""
    ablation = run.result(doc, "ablation")
    if ablation is None:
        return
    doc.p(
        "Test utility U of one router family trained on each Table-2 supervision: single-shot "
        "labels; `input_only` (one decode per rewrite); `output_only` (the decodes of one "
        "formulation); `without_risk` (β = 0); `rewrite_risk` (σ across rewrite means); "
        "`decoding_risk` (mean within-rewrite σ); `full_dars` (all K×M, σ over all). `average` "
        "is the mean over the columns (blank unless every column has a value)."
    )
    present = [d for d in run.datasets if d in set(ablation["dataset"].to_list())]
    for fam in order_families(ablation["family"].unique().to_list()):
        sub = ablation_table(ablation.filter(pl.col("family") == fam), present)
        doc.h(3, f"Table 2: supervision ablation — {fam}")
        doc.table(
            sub.select(
                "supervision",
                *[pl.col(c).map_elements(fmt, return_dtype=pl.String) for c in sub.columns[1:]],
            )
        )
        note = ordering_note(sub)
        if note is not None:
            doc.note(note)
    paper = _paper_table(run.datasets, run.paper)
    if paper is not None:
        doc.h(3, "Paper's Table 2 (MIRT, paper's pool and benchmarks)")
        doc.table(paper)


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    return [View("ablation (U)", ablation_table(tables["ablation"]))]


SPEC = register_experiment(
    ExperimentSpec(
        name="ablation",
        help="Single-shot and the six ablation supervisions of `evaluation.ablation_family` "
        "(default mirt) with an average column (Table 2) → results/ablation.",
        title="Ablation",
        order=20,
        inputs=(VIEW_UTILITIES, ROUTES),
        compute=compute,
        tables={"ablation": ABLATION_COLUMNS},
        section=section,
        view=view,
        check=check,
    )
)
