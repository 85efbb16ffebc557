"""The main experiment (the paper's Tables 1 and 4): every trained router on the two test views.

Result ``main``: one row per (dataset, view, family, supervision) with U, Q, C — for
``single_shot`` the mean and std over the S draws (the paper's Table 4), otherwise the router's
value with a bootstrap CI over test queries — plus the reference rows ``best_fixed`` (its model in
``best_model``), ``oracle`` and ``random`` (family = supervision = the reference's name).

Result ``dars_gain``: one row per (dataset, view, family) trained on both ``single_shot`` and
``dars``, with the family's router preset, the single-shot mean ± std, the DARS router's U with
its CI and the gain U(DARS) − mean single-shot U with a paired bootstrap CI over test queries
(:func:`~dars.evaluation.metrics.paired_gain`): the reproduction table of the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from dars.evaluation.document import DASH, Document, ReportRun, ci, fmt, pm, text_table
from dars.evaluation.experiments.base import (
    ROUTES,
    VIEW_UTILITIES,
    ExperimentSpec,
    Inputs,
    View,
    register_experiment,
)
from dars.evaluation.metrics import (
    ROUTE_SCORE_COLUMNS,
    VIEW_SHORT,
    order_families,
    paired_gain,
    reference_rows,
    score_routes,
    view_columns,
)
from dars.evaluation.paper import paper_columns, paper_figures

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = [
    "DARS_GAIN_COLUMNS",
    "MAIN_COLUMNS",
    "SPEC",
    "main_detail_table",
    "main_rows",
    "gain_rows",
    "main_table",
    "paper_main_table",
    "single_shot_comparison",
]

#: Columns of result ``main`` (see the module docstring), in order.
MAIN_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "supervision": pl.String,
    **{k: v for k, v in ROUTE_SCORE_COLUMNS.items() if k != "view"},
    "best_model": pl.String,
}
#: Columns of result ``dars_gain`` (see the module docstring), in order.
DARS_GAIN_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "preset": pl.String,
    "n_draws": pl.Int64,
    "single_U": pl.Float64,
    "single_std": pl.Float64,
    "dars_U": pl.Float64,
    "dars_low": pl.Float64,
    "dars_high": pl.Float64,
    "gain": pl.Float64,
    "gain_low": pl.Float64,
    "gain_high": pl.Float64,
}
_REFERENCES = ("best_fixed", "random", "oracle")
_REFERENCE_LABELS = {"best_fixed": "best fixed", "random": "random", "oracle": "oracle"}


# ------------------------------------------------------------------------------------------------
# compute
# ------------------------------------------------------------------------------------------------
def _reference(dataset: str, vu: pl.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for r in reference_rows(vu).iter_rows(named=True):
        for name, prefix in (("best_fixed", "best"), ("oracle", "oracle"), ("random", "random")):
            rows.append(
                {
                    "dataset": dataset,
                    "view": r["view"],
                    "family": name,
                    "supervision": name,
                    "n_draws": 1,
                    "U": r[f"{prefix}_U"],
                    "U_std": None,
                    "U_low": None,
                    "U_high": None,
                    "Q": r[f"{prefix}_Q"],
                    "C": r[f"{prefix}_C"],
                    "best_model": r["best_model"] if name == "best_fixed" else None,
                }
            )
    return rows


def main_rows(
    view_utils: Mapping[str, pl.DataFrame],
    routes: Mapping[tuple[str, str, str], pl.DataFrame],
    *,
    n_boot: int,
    seed: int,
) -> pl.DataFrame:
    """The ``main`` table (see the module docstring).

    ``view_utils``: ``{dataset: view_utilities rows}``; ``routes``: ``{(dataset, family,
    supervision): routes rows}`` of the trained routers. Rows: per dataset (in ``view_utils``
    order) the reference rows, then the routers of that dataset in ``routes`` order, each scored by
    :func:`~dars.evaluation.metrics.score_routes` (``n_boot`` resamples, seed ``seed``).
    """
    rows: list[dict[str, Any]] = []
    for dataset, vu in view_utils.items():
        rows += _reference(dataset, vu)
        for (ds, family, supervision), frame in routes.items():
            if ds != dataset:
                continue
            scored = score_routes(
                frame,
                vu,
                dataset=dataset,
                single_shot=supervision == "single_shot",
                n_boot=n_boot,
                seed=seed,
            )
            rows += [
                {
                    "dataset": dataset,
                    **r,
                    "family": family,
                    "supervision": supervision,
                    "best_model": None,
                }
                for r in scored.iter_rows(named=True)
            ]
    return pl.DataFrame(rows, schema=MAIN_COLUMNS)


def gain_rows(
    main: pl.DataFrame,
    view_utils: Mapping[str, pl.DataFrame],
    routes: Mapping[tuple[str, str, str], pl.DataFrame],
    presets: Mapping[str, str],
    *,
    n_boot: int,
    seed: int,
) -> pl.DataFrame:
    """The ``dars_gain`` table (see the module docstring) from the ``main`` rows and the same
    inputs as :func:`main_rows`; ``presets``: family → the preset it was trained with."""
    rows: list[dict[str, Any]] = []
    for (dataset, family, supervision), single in routes.items():
        if supervision != "single_shot" or (dataset, family, "dars") not in routes:
            continue
        gains = paired_gain(
            single,
            routes[(dataset, family, "dars")],
            view_utils[dataset],
            dataset=dataset,
            n_boot=n_boot,
            seed=seed,
        )
        cells = main.filter((pl.col("dataset") == dataset) & (pl.col("family") == family))
        for g in gains.iter_rows(named=True):
            at = cells.filter(pl.col("view") == g["view"])
            s = at.filter(pl.col("supervision") == "single_shot").row(0, named=True)
            d = at.filter(pl.col("supervision") == "dars").row(0, named=True)
            rows.append(
                {
                    "dataset": dataset,
                    "view": g["view"],
                    "family": family,
                    "preset": presets.get(family),
                    "n_draws": s["n_draws"],
                    "single_U": s["U"],
                    "single_std": s["U_std"],
                    "dars_U": d["U"],
                    "dars_low": d["U_low"],
                    "dars_high": d["U_high"],
                    "gain": g["gain"],
                    "gain_low": g["gain_low"],
                    "gain_high": g["gain_high"],
                }
            )
    return pl.DataFrame(rows, schema=DARS_GAIN_COLUMNS)


def compute(inputs: Inputs, exp: Experiment) -> dict[str, pl.DataFrame]:
    """Every trained router of every benchmark and the reference policies, and each family's
    DARS gain over its single-shot routers."""
    n_boot, seed = exp.evaluation.n_boot, exp.seed
    main = main_rows(inputs[VIEW_UTILITIES], inputs[ROUTES], n_boot=n_boot, seed=seed)
    families = {family for (_, family, _) in inputs[ROUTES]}
    presets = {f: exp.router_preset_of(f) for f in families}
    gains = gain_rows(
        main, inputs[VIEW_UTILITIES], inputs[ROUTES], presets, n_boot=n_boot, seed=seed
    )
    return {"main": main, "dars_gain": gains}


# ------------------------------------------------------------------------------------------------
# tables of the report
# ------------------------------------------------------------------------------------------------
def _column(dataset: str, view: str) -> str:
    return f"{dataset}_{VIEW_SHORT.get(view, view)}"


def _routed_families(main: pl.DataFrame) -> list[str]:
    return order_families(
        main.filter(pl.col("supervision").is_in(["single_shot", "dars"]))["family"].to_list()
    )


def main_table(main: pl.DataFrame, datasets: Sequence[str]) -> pl.DataFrame:
    """The paper's Table 1 from the ``main`` result, as display strings.

    One row per (router family, supervision) for single-shot and DARS, then one row per
    reference policy (best fixed model, random routing, per-query oracle); one column per
    dataset × test view, ``<dataset>_rew`` / ``<dataset>_dec``, holding test utility U.
    Single-shot cells are "mean ± std" over the draws; a missing cell is "—".
    """
    cols = view_columns(datasets)
    cell = {
        (r["family"], r["supervision"], _column(r["dataset"], r["view"])): r
        for r in main.iter_rows(named=True)
    }
    rows: list[dict[str, str]] = []
    for fam in _routed_families(main):
        for supervision, label in (("single_shot", "single-shot"), ("dars", "DARS")):
            row = {"family": fam, "supervision": label}
            for c in cols:
                r = cell.get((fam, supervision, c))
                if r is not None:
                    row[c] = pm(r["U"], r["U_std"]) if supervision == "single_shot" else fmt(r["U"])
            rows.append(row)
    for ref in _REFERENCES:
        row = {"family": _REFERENCE_LABELS[ref], "supervision": DASH}
        for c in cols:
            r = cell.get((ref, ref, c))
            if r is not None:
                row[c] = fmt(r["U"])
        rows.append(row)
    return text_table(rows, ["family", "supervision", *cols])


def single_shot_comparison(main: pl.DataFrame) -> pl.DataFrame:
    """DARS against the single-shot routers of the same family, from the ``main`` result.

    One row per (dataset, view, family) having both the single_shot and the dars supervision:
    ``single_mean`` / ``single_std`` (over the draws), ``dars`` (U of the DARS router), ``delta`` =
    dars − single_mean and ``above_1sd`` = delta > single_std.
    """
    single = main.filter(pl.col("supervision") == "single_shot").select(
        "dataset",
        "view",
        "family",
        pl.col("U").alias("single_mean"),
        pl.col("U_std").alias("single_std"),
    )
    dars = main.filter(pl.col("supervision") == "dars").select(
        "dataset", "view", "family", pl.col("U").alias("dars")
    )
    return (
        single.join(dars, on=["dataset", "view", "family"], how="inner")
        .with_columns((pl.col("dars") - pl.col("single_mean")).alias("delta"))
        .with_columns((pl.col("delta") > pl.col("single_std").fill_null(0.0)).alias("above_1sd"))
        .sort("dataset", "view", "family")
    )


def paper_main_table(
    families: Sequence[str], datasets: Sequence[str], mapping: Mapping[str, str | None]
) -> pl.DataFrame | None:
    """The paper's Table 1 restricted to ``families`` and to the paper datasets our
    ``datasets`` map to (``mapping``: ours → paper's or None), as display strings.

    One row per (family, supervision) the paper reports; columns ``<paper>_rew (≙ <ours>)``.
    None when no dataset maps or no family is in the paper.
    """
    t1 = paper_figures()["table1_main"]
    idx = paper_columns(t1)
    pairs = [(d, mapping.get(d)) for d in datasets if mapping.get(d)]
    fams = [f for f in families if f in t1]
    if not pairs or not fams:
        return None
    cols = [
        (f"{p}_{short} (≙ {d})", idx[f"{p}_{short}"])
        for d, p in pairs
        for short in VIEW_SHORT.values()
    ]
    rows = []
    for fam in fams:
        for key, label in (("single", "single-shot (mean)"), ("dars", "DARS")):
            row = {"family": fam, "supervision": label}
            row.update({name: fmt(float(t1[fam][key][i])) for name, i in cols})
            rows.append(row)
    return text_table(rows, ["family", "supervision", *[name for name, _ in cols]])


def main_detail_table(main: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """The paper's Table 4 for one dataset from the ``main`` result, as display strings.

    One row per (family, single-shot / DARS) and per reference policy; for each view: U,
    its spread (single-shot: "± std" over draws; DARS: 95% bootstrap CI over test queries),
    mean quality Q and mean normalised cost C. The best fixed row names the model per view.
    """
    sub = main.filter(pl.col("dataset") == dataset)
    cell = {(r["family"], r["supervision"], r["view"]): r for r in sub.iter_rows(named=True)}
    cols = ["family", "supervision"]
    for short in VIEW_SHORT.values():
        cols += [f"{short} U", f"{short} ± std / 95% CI", f"{short} Q", f"{short} C"]
    keys = [(f, s) for f in _routed_families(sub) for s in ("single_shot", "dars")]
    keys += [(ref, ref) for ref in _REFERENCES]
    rows = []
    for fam, supervision in keys:
        present = [cell.get((fam, supervision, v)) for v in VIEW_SHORT]
        if not any(present):
            continue
        if supervision in _REFERENCES:
            label = DASH
            if supervision == "best_fixed":
                label = (
                    ", ".join(
                        f"{VIEW_SHORT[v]}: {r['best_model']}"
                        for v, r in zip(VIEW_SHORT, present, strict=True)
                        if r is not None and r.get("best_model")
                    )
                    or DASH
                )
            row = {"family": _REFERENCE_LABELS[supervision], "supervision": label}
        else:
            row = {
                "family": fam,
                "supervision": "single-shot" if supervision == "single_shot" else "DARS",
            }
        for short, r in zip(VIEW_SHORT.values(), present, strict=True):
            if r is None:
                continue
            row[f"{short} U"] = fmt(r["U"])
            if r.get("U_std") is not None:
                row[f"{short} ± std / 95% CI"] = f"± {fmt(r['U_std'])}"
            else:
                row[f"{short} ± std / 95% CI"] = ci(r.get("U_low"), r.get("U_high"))
            row[f"{short} Q"] = fmt(r["Q"])
            row[f"{short} C"] = fmt(r["C"])
        rows.append(row)
    return text_table(rows, cols)


# ------------------------------------------------------------------------------------------------
# report section and terminal view
# ------------------------------------------------------------------------------------------------
def section(doc: Document, run: ReportRun) -> None:
    """Table 1 with the DARS vs single-shot summary, the paper's Table 1, Table 4 per dataset."""
    main = run.result(doc, "main")
    if main is None:
        return
    lam = fmt((run.context or {}).get("lam"))
    draws = main.filter(pl.col("supervision") == "single_shot")["n_draws"].drop_nulls()
    n_draws = fmt(int(draws.max())) if draws.len() else DASH
    doc.p(
        f"U is the mean test utility q − λ·c (λ = {lam}, c the normalised cost) over test queries "
        "of the model each router picks, on the rewrite view (`_rew`) and the decode view "
        f"(`_dec`). Single-shot cells are mean ± std over {n_draws} routers, each trained on one "
        "randomly drawn observation per (query, model); DARS rows are one router trained on "
        "distribution-aware labels."
    )
    doc.h(3, "Table 1: test utility by router family and supervision")
    doc.table(main_table(main, run.datasets))
    cmp = single_shot_comparison(main)
    if cmp.height:
        doc.p(
            f"DARS is above the single-shot mean in **{int((cmp['delta'] > 0).sum())} of "
            f"{cmp.height}** (family, dataset, view) cells and above mean + 1 std in "
            f"{int(cmp['above_1sd'].sum())}; mean DARS − single-shot difference "
            f"{cmp['delta'].mean():+.3f} (range {cmp['delta'].min():+.3f} to "
            f"{cmp['delta'].max():+.3f})."
        )
    _reproduction(doc, run)
    paper = paper_main_table(_routed_families(main), run.datasets, run.paper)
    if paper is not None:
        doc.h(3, "Paper's Table 1 (paper's pool and benchmarks, for comparison)")
        doc.table(paper)
    for d in run.datasets:
        doc.h(3, f"Table 4: detail — {d}")
        doc.table(main_detail_table(main, d))


def gain_table(gains: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Display table of ``dataset``'s ``dars_gain`` rows: one row per (family, preset), per view
    the single-shot mean ± std, the DARS router with its CI and the gain with its paired CI."""
    part = gains.filter(pl.col("dataset") == dataset)
    views = sorted(part["view"].unique().to_list())
    keys = part.select("family", "preset").unique(maintain_order=True)
    order = {f: i for i, f in enumerate(order_families(keys["family"].to_list()))}
    rows, cols = [], ["family", "preset"]
    for v in views:
        s = VIEW_SHORT.get(v, v)
        cols += [f"{s} single-shot", f"{s} DARS [95% CI]", f"{s} gain [95% CI]"]
    for k in sorted(keys.iter_rows(named=True), key=lambda r: (order[r["family"]], r["preset"])):
        row = {"family": k["family"], "preset": k["preset"] or DASH}
        for v in views:
            s = VIEW_SHORT.get(v, v)
            at = part.filter((pl.col("family") == k["family"]) & (pl.col("view") == v)).row(
                0, named=True
            )
            row[f"{s} single-shot"] = pm(at["single_U"], at["single_std"])
            row[f"{s} DARS [95% CI]"] = f"{fmt(at['dars_U'])} {ci(at['dars_low'], at['dars_high'])}"
            row[f"{s} gain [95% CI]"] = f"{at['gain']:+.3f} {ci(at['gain_low'], at['gain_high'])}"
        rows.append(row)
    return text_table(rows, cols)


def _reproduction(doc: Document, run: ReportRun) -> None:
    """Per dataset: each family's (and preset's) single-shot mean ± std, DARS router and gain
    with its paired CI, so a reader sees where the gain depends on the router design."""
    gains = run.result(doc, "dars_gain")
    if gains is None or gains.height == 0:
        return
    presets = sorted({p for p in gains["preset"].to_list() if p})
    doc.h(3, "DARS gain by router family and preset")
    doc.p(
        f"Router presets in this run: {', '.join(f'`{p}`' for p in presets) or DASH} (`tuned`: "
        "dars's own router designs; `paper`: the DARS authors' architectures and training "
        "budgets, docs/router_presets.md). Gain = U(DARS) − mean single-shot U, with a 95% "
        "bootstrap CI over test queries, paired (both routers on the same resampled queries). "
        "A gain that holds under one preset and not the other depends on the router design."
    )
    for d in run.datasets:
        if gains.filter(pl.col("dataset") == d).height:
            doc.table(gain_table(gains, d), caption=f"{d}: DARS gain per family and preset.")


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    """Table 1 with means only and two-line headers (dataset / view), so it fits an 80-column
    terminal; the stds and CIs are in the report and ``results/main.parquet``."""
    main = tables["main"]
    table = main_table(main, main["dataset"].unique(maintain_order=True).to_list())
    cols = table.columns[2:]
    table = (
        table.with_columns(
            pl.col(cols).str.replace(r" ± .*$", ""),
            pl.col("supervision").replace({"single-shot": "1-shot"}),
        )
        .rename({c: c.replace("_", "\n") for c in cols})
        .rename({"supervision": "labels"})
    )
    title = (
        "test utility U = quality − λ·cost of the chosen model (1-shot: mean over the "
        "single-shot draws; ± std, CIs and ablations in the report)"
    )
    return [View(title, table)]


SPEC = register_experiment(
    ExperimentSpec(
        name="main",
        help="Every family × {single-shot, DARS, ablations} on both test views, with best fixed, "
        "random and oracle rows (Tables 1 and 4) → results/main.",
        title="Main results",
        order=10,
        inputs=(VIEW_UTILITIES, ROUTES),
        compute=compute,
        tables={"main": MAIN_COLUMNS, "dars_gain": DARS_GAIN_COLUMNS},
        section=section,
        view=view,
    )
)
