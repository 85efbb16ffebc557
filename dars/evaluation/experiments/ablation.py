"""The ablation experiment (the paper's Table 2): one router family over supervision variants.

Result ``ablation``: one row per (dataset, view, variant) for the family
``exp.evaluation.ablation_family``, variants in Table-2 order (:data:`ABLATION_VARIANTS`): the
router trained on that variant's supervision, scored like ``main``
(:func:`~dars.evaluation.metrics.score_routes`). ``full_dars`` equals ``dars`` and is not
trained by default, so its own routes are used only when someone trained them, else the
``dars`` routes; the JSON twin records which mode served each (dataset, variant).
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
from dars.supervision.ablations import VARIANTS

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = ["ABLATION_COLUMNS", "ABLATION_VARIANTS", "SPEC", "ablation", "ablation_table"]

#: Table-2 rows, in the paper's order.
ABLATION_VARIANTS: tuple[str, ...] = ("single_shot", *VARIANTS)
ABLATION_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "variant": pl.String,
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
    """The ablation of one router family over supervision variants.

    ``view_utils``: ``{dataset: view_utilities rows}``; ``routes``: ``{(dataset, variant):
    routes.parquet rows}`` of ``family`` trained on that variant's supervision (variants from
    :data:`ABLATION_VARIANTS`; ``single_shot`` routes hold every draw). Every (dataset, variant)
    pair must be given.

    One row per (dataset, view, variant) with :data:`ABLATION_COLUMNS`, ordered by dataset (as
    in ``view_utils``), variant (Table-2 order), view (rewrite, then decode). U/Q/C as in
    ``main``: for ``single_shot`` the mean over the ``n_draws`` draws and ``U_std`` their std;
    for the other variants the router's value and ``U_low``/``U_high`` = bootstrap CI over test
    queries (``n_boot`` resamples seeded with ``seed``).
    """
    missing = [f"{ds}/{v}" for ds in view_utils for v in ABLATION_VARIANTS if (ds, v) not in routes]
    if missing:
        raise ValueError(f"ablation of {family!r}: no routes for {', '.join(missing)}")
    view_rank = {v: i for i, v in enumerate(("test_rewrite", "test_decode"))}
    rows: list[dict[str, Any]] = []
    for dataset, vu in view_utils.items():
        for variant in ABLATION_VARIANTS:
            scored = score_routes(
                routes[(dataset, variant)],
                vu,
                dataset=dataset,
                single_shot=variant == "single_shot",
                n_boot=n_boot,
                seed=seed,
            )
            ordered = sorted(scored.iter_rows(named=True), key=lambda r: view_rank[r["view"]])
            rows += [
                {"dataset": dataset, "family": family, "variant": variant, **r} for r in ordered
            ]
    return pl.DataFrame(rows, schema=ABLATION_COLUMNS)


def ablation_table(ablation: pl.DataFrame, datasets: Sequence[str] | None = None) -> pl.DataFrame:
    """The paper's Table 2 from ``ablation`` rows of one family.

    One row per variant present, in Table-2 order; column ``variant``, then ``<dataset>_rew``
    and ``<dataset>_dec`` (test utility U in the rewrite / decode view; single-shot: mean over
    draws) for each dataset of ``datasets`` (default: those of the frame, sorted), then
    ``average`` = unweighted mean of those columns (null when one of them is missing).
    """
    need = ("dataset", "view", "family", "variant", "U")
    absent = [c for c in need if c not in ablation.columns]
    if absent:
        raise ValueError(f"ablation frame lacks column(s) {absent}; it has {ablation.columns}")
    families = ablation["family"].unique().to_list()
    if len(families) > 1:
        raise ValueError(f"ablation frame holds several families {sorted(families)}; pass one")
    unknown = sorted(set(ablation["variant"].to_list()) - set(ABLATION_VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; valid: {', '.join(ABLATION_VARIANTS)}")
    bad_views = sorted(set(ablation["view"].to_list()) - set(VIEWS))
    if bad_views:
        raise ValueError(f"unknown view(s) {bad_views}; valid: {', '.join(VIEWS)}")
    dup = ablation.filter(pl.struct("dataset", "view", "variant").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise ValueError(
            f"ablation frame has several rows for dataset={r['dataset']!r}, view={r['view']!r}, "
            f"variant={r['variant']!r}"
        )
    if datasets is None:
        datasets = sorted(ablation["dataset"].unique().to_list())
    columns = view_columns(datasets)
    wide = ablation.with_columns(
        (pl.col("dataset") + "_" + pl.col("view").replace_strict(VIEW_SHORT)).alias("column")
    ).pivot(on="column", index="variant", values="U", aggregate_function=None)
    order = {v: i for i, v in enumerate(ABLATION_VARIANTS)}
    wide = wide.with_columns(
        [pl.lit(None, dtype=pl.Float64).alias(c) for c in columns if c not in wide.columns]
    )
    any_null = pl.any_horizontal([pl.col(c).is_null() for c in columns])
    return (
        wide.select("variant", *columns)
        .with_columns(
            pl.when(any_null).then(None).otherwise(pl.mean_horizontal(columns)).alias("average")
        )
        .sort(pl.col("variant").replace_strict(order, return_dtype=pl.Int64))
    )


def _trained_mode(
    routes: Mapping[tuple[str, str, str], pl.DataFrame], dataset: str, family: str, variant: str
) -> str:
    """The mode whose routes serve ``variant``: ``full_dars`` falls back to ``dars`` unless its
    own router was trained."""
    if variant == "full_dars" and (dataset, family, "full_dars") not in routes:
        return "dars"
    return variant


def check(exp: Experiment) -> None:
    """The ablation family must be a registered router family."""
    check_families([exp.evaluation.ablation_family])


def compute(inputs: Inputs, exp: Experiment) -> dict[str, Any]:
    """Table 2 for ``exp.evaluation.ablation_family`` on every benchmark; a variant without
    routes raises :class:`MissingInputError` naming the ``dars train`` command that trains it."""
    check(exp)
    family = exp.evaluation.ablation_family
    n_boot = exp.evaluation.n_boot
    view_utils = inputs[VIEW_UTILITIES]
    routes = inputs[ROUTES]
    modes = {
        (ds, v): _trained_mode(routes, ds, family, v)
        for ds in view_utils
        for v in ABLATION_VARIANTS
    }
    missing = {k: mode for k, mode in modes.items() if (k[0], family, mode) not in routes}
    if missing:
        command = f"dars train --family {family} " + " ".join(
            f"--mode {m}" for m in dict.fromkeys(missing.values())
        )
        raise MissingInputError(
            f"ablation of router family {family!r} needs routes that are not trained; train "
            f"them with `{command}`",
            [(ROUTES, (ds, family, mode)) for (ds, _), mode in missing.items()],
        )
    chosen = {k: routes[(k[0], family, mode)] for k, mode in modes.items()}
    frame = ablation(view_utils, chosen, family=family, n_boot=n_boot, seed=exp.seed)
    extras = {
        "family": family,
        "n_boot": n_boot,
        "trained_modes": {f"{ds}/{v}": mode for (ds, v), mode in modes.items()},
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
        {"variant": v, **{name: fmt(float(t2[v][i])) for name, i in cols}}
        for v in ABLATION_VARIANTS
        if v in t2
    ]
    return text_table(rows, ["variant", *[name for name, _ in cols]])


def section(doc: Document, run: ReportRun) -> None:
    """Table 2 per family of the result, then the paper's Table 2."""
    ablation = run.result(doc, "ablation")
    if ablation is None:
        return
    doc.p(
        "Test utility U of one router family trained on each supervision variant: single-shot "
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
                "variant",
                *[pl.col(c).map_elements(fmt, return_dtype=pl.String) for c in sub.columns[1:]],
            )
        )
    paper = _paper_table(run.datasets, run.paper)
    if paper is not None:
        doc.h(3, "Paper's Table 2 (MIRT, paper's pool and benchmarks)")
        doc.table(paper)


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    return [View("ablation (U)", ablation_table(tables["ablation"]))]


SPEC = register_experiment(
    ExperimentSpec(
        name="ablation",
        help="The six supervision variants of `evaluation.ablation_family` (default mirt) with "
        "an average column (Table 2) → results/ablation.",
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
