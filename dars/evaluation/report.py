"""The report stage: ``report/index.md``, ``report/index.html`` and PNG figures from ``results/``.

:func:`write_report` reads every result table (:mod:`dars.evaluation.results`) and the run
context stored with them, lays them out in the paper's order — (1) setup, (2) main results
(Tables 1 and 4), (3) ablation (Table 2), (4) diagnostics (Fig 2 a–c, label recovery),
(5) sample efficiency (Fig 4a), (6) cost–quality frontiers (Fig 4b, budget table), (7) β
sensitivity (Fig 4c), (8) validity (Tables 5 and 6) — and writes them through
:class:`~dars.storage.RunLayout`. Every number printed comes from a result table; the paper's
own numbers (``paper_figures.yaml``) are shown beside ours, labelled as the paper's, for the
dataset of the same task type. A section whose result is missing says so and names the command
that writes it; only a missing ``main`` result stops the report.

The layout is built once as a list of blocks (headings, text, tables, figures) by
:func:`build_report` (no I/O) and rendered twice: Markdown referring to the PNG files beside it
and a single self-contained HTML file (inline CSS, figures as base64 data URIs) that can be
mailed on its own.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import html
import importlib.resources
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from dars.evaluation import plots
from dars.evaluation.experiments import ABLATION_VARIANTS, ablation_table
from dars.evaluation.metrics import VIEW_SHORT, view_columns
from dars.evaluation.results import (
    PRODUCED_BY,
    ResultMissingError,
    read_context,
    read_result,
    result_exists,
)
from dars.storage import RunLayout, atomic_write_bytes, atomic_write_text

__all__ = [
    "ABLATION_VARIANTS",
    "RESULT_NAMES",
    "SECTION_TITLES",
    "Report",
    "beta_table",
    "budget_table",
    "build_report",
    "diagnostics_table",
    "fmt",
    "main_detail_table",
    "main_table",
    "paper_dataset",
    "paper_figures",
    "paper_main_table",
    "recovery_table",
    "render_html",
    "render_markdown",
    "sample_efficiency_table",
    "single_shot_comparison",
    "validity_table",
    "write_report",
]

#: Every result table the report reads, in the order they appear.
RESULT_NAMES: tuple[str, ...] = tuple(PRODUCED_BY)
SECTION_TITLES = (
    "1. Setup",
    "2. Main results",
    "3. Ablation",
    "4. Diagnostics",
    "5. Sample efficiency",
    "6. Cost–quality frontiers",
    "7. β sensitivity",
    "8. Validity",
)
_REFERENCES = ("best_fixed", "random", "oracle")
_REFERENCE_LABELS = {"best_fixed": "best fixed", "random": "random", "oracle": "oracle"}
#: Which of the paper's datasets a benchmark is compared with, by task type.
_PAPER_DATASET_BY_TASK = {"mc": "gpqa", "math": "math500", "span": "drop800"}
_PAPER_NOTE = (
    "Columns or rows marked *paper* are the numbers reported by Lai, Hu, Chen, Li and Ye (2026), "
    "“From Sampled Outcomes to Capability Distributions: Rethinking Supervision for LLM "
    "Routing”, measured on their pool ({pool}) and benchmarks; each of our datasets is set "
    "beside the paper's dataset of the same task type ({mapping})."
)
DASH = "—"


# ------------------------------------------------------------------------------------------------
# paper numbers
# ------------------------------------------------------------------------------------------------
@functools.cache
def paper_figures() -> dict[str, Any]:
    """The paper's reported numbers (``dars/evaluation/paper_figures.yaml``): keys ``setup``,
    ``diagnostics``, ``table1_main``, ``table2_ablation_mirt``, ``table5_rewrite_validity``,
    ``table6_scoring_validity``."""
    text = (
        importlib.resources.files("dars.evaluation")
        .joinpath("paper_figures.yaml")
        .read_text(encoding="utf-8")
    )
    data = yaml.safe_load(text)
    needed = (
        "setup",
        "diagnostics",
        "table1_main",
        "table2_ablation_mirt",
        "table5_rewrite_validity",
        "table6_scoring_validity",
    )
    missing = [k for k in needed if k not in data]
    if missing:
        raise ValueError(f"paper_figures.yaml lacks section(s) {missing}")
    return data


def paper_dataset(name: str) -> str | None:
    """The paper's dataset (gpqa / math500 / drop800) compared with benchmark ``name``: the one
    of the same task type (multiple choice / math / span); None when the benchmark is not
    registered or has no fixed task type (local files)."""
    from dars.benchmarks.base import get

    try:
        task = get(name).task_type
    except (KeyError, TypeError, ValueError):
        return None
    return _PAPER_DATASET_BY_TASK.get(task)


def _paper_columns(table: Mapping[str, Any]) -> dict[str, int]:
    return {c: i for i, c in enumerate(table["columns"])}


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 3) -> str:
    """One table cell: floats with ``digits`` decimals, integers as they are, None/NaN as "—"."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return DASH if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _pm(mean: Any, std: Any) -> str:
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def _ci(low: Any, high: Any, digits: int = 3) -> str:
    if low is None or high is None:
        return DASH
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def _column(dataset: str, view: str) -> str:
    return f"{dataset}_{VIEW_SHORT.get(view, view)}"


def _strings(rows: list[dict[str, str]], columns: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {c: [r.get(c, DASH) for r in rows] for c in columns},
        schema=dict.fromkeys(columns, pl.String),
    )


# ------------------------------------------------------------------------------------------------
# tables (pure: frames in, frames out)
# ------------------------------------------------------------------------------------------------
def main_table(main: pl.DataFrame, datasets: Sequence[str]) -> pl.DataFrame:
    """The paper's Table 1 from the ``main`` result, as display strings.

    One row per (router family, supervision) for single-shot and DARS, then one row per
    reference policy (best fixed model, random routing, per-query oracle); one column per
    dataset × test view, ``<dataset>_rew`` / ``<dataset>_dec``, holding test utility U.
    Single-shot cells are "mean ± std" over the draws; a missing cell is "—".
    """
    cols = view_columns(datasets)
    cell = {
        (r["family"], r["mode"], _column(r["dataset"], r["view"])): r
        for r in main.iter_rows(named=True)
    }
    families = plots.order_families(
        main.filter(pl.col("mode").is_in(["single_shot", "dars"]))["family"].to_list()
    )
    rows: list[dict[str, str]] = []
    for fam in families:
        for mode, label in (("single_shot", "single-shot"), ("dars", "DARS")):
            row = {"router": fam, "supervision": label}
            for c in cols:
                r = cell.get((fam, mode, c))
                if r is not None:
                    row[c] = _pm(r["U"], r["U_std"]) if mode == "single_shot" else fmt(r["U"])
            rows.append(row)
    for ref in _REFERENCES:
        row = {"router": _REFERENCE_LABELS[ref], "supervision": DASH}
        for c in cols:
            r = cell.get((ref, ref, c))
            if r is not None:
                row[c] = fmt(r["U"])
        rows.append(row)
    return _strings(rows, ["router", "supervision", *cols])


def single_shot_comparison(main: pl.DataFrame) -> pl.DataFrame:
    """DARS against the single-shot routers of the same family, from the ``main`` result.

    One row per (dataset, view, family) having both modes: ``single_mean`` / ``single_std``
    (over the draws), ``dars`` (U of the DARS router), ``delta`` = dars − single_mean and
    ``above_1sd`` = delta > single_std.
    """
    single = main.filter(pl.col("mode") == "single_shot").select(
        "dataset",
        "view",
        "family",
        pl.col("U").alias("single_mean"),
        pl.col("U_std").alias("single_std"),
    )
    dars = main.filter(pl.col("mode") == "dars").select(
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
    idx = _paper_columns(t1)
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
            row = {"router": fam, "supervision": label}
            row.update({name: fmt(float(t1[fam][key][i])) for name, i in cols})
            rows.append(row)
    return _strings(rows, ["router", "supervision", *[name for name, _ in cols]])


def main_detail_table(main: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """The paper's Table 4 for one dataset from the ``main`` result, as display strings.

    One row per (family, single-shot / DARS) and per reference policy; for each view: U,
    its spread (single-shot: "± std" over draws; DARS: 95% bootstrap CI over test queries),
    mean quality Q and mean normalised cost C. The best fixed row names the model per view.
    """
    sub = main.filter(pl.col("dataset") == dataset)
    cell = {(r["family"], r["mode"], r["view"]): r for r in sub.iter_rows(named=True)}
    families = plots.order_families(
        sub.filter(pl.col("mode").is_in(["single_shot", "dars"]))["family"].to_list()
    )
    cols = ["router", "supervision"]
    for short in VIEW_SHORT.values():
        cols += [f"{short} U", f"{short} ± std / 95% CI", f"{short} Q", f"{short} C"]
    keys = [(f, m) for f in families for m in ("single_shot", "dars")]
    keys += [(ref, ref) for ref in _REFERENCES]
    rows = []
    for fam, mode in keys:
        present = [cell.get((fam, mode, v)) for v in VIEW_SHORT]
        if not any(present):
            continue
        if mode in _REFERENCES:
            label = DASH
            if mode == "best_fixed":
                label = (
                    ", ".join(
                        f"{VIEW_SHORT[v]}: {r['best_model']}"
                        for v, r in zip(VIEW_SHORT, present, strict=True)
                        if r is not None and r.get("best_model")
                    )
                    or DASH
                )
            row = {"router": _REFERENCE_LABELS[mode], "supervision": label}
        else:
            row = {"router": fam, "supervision": "single-shot" if mode == "single_shot" else "DARS"}
        for short, r in zip(VIEW_SHORT.values(), present, strict=True):
            if r is None:
                continue
            row[f"{short} U"] = fmt(r["U"])
            if r.get("U_std") is not None:
                row[f"{short} ± std / 95% CI"] = f"± {fmt(r['U_std'])}"
            else:
                row[f"{short} ± std / 95% CI"] = _ci(r.get("U_low"), r.get("U_high"))
            row[f"{short} Q"] = fmt(r["Q"])
            row[f"{short} C"] = fmt(r["C"])
        rows.append(row)
    return _strings(rows, cols)


def _paper_ablation_table(
    datasets: Sequence[str], mapping: Mapping[str, str | None]
) -> pl.DataFrame | None:
    t2 = paper_figures()["table2_ablation_mirt"]
    idx = _paper_columns(t2)
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
    return _strings(rows, ["variant", *[name for name, _ in cols]])


def diagnostics_table(diagnostics: pl.DataFrame, mapping: Mapping[str, str | None]) -> pl.DataFrame:
    """The diagnostics of Fig 2 as display strings: one row per (dataset, metric) of the
    ``diagnostics`` result with value, 95% CI, n_queries, n_units and the paper's value for
    the dataset of the same task type ("—" where the paper states none)."""
    paper = paper_figures()["diagnostics"]
    rows = []
    for r in diagnostics.iter_rows(named=True):
        p = mapping.get(r["dataset"])
        pv = paper.get(p, {}).get(r["metric"]) if p else None
        # Variances are small numbers: three decimals would print most of them as 0.0xx.
        digits = 4 if r["metric"] in plots.VARIANCE_METRICS else 3
        rows.append(
            {
                "dataset": r["dataset"],
                "metric": r["metric"],
                "value": fmt(r["value"], digits),
                "95% CI": _ci(r["ci_low"], r["ci_high"], digits),
                "n_queries": fmt(r["n_queries"]),
                "n_units": fmt(r["n_units"]),
                "paper": f"{fmt(float(pv))} ({p})" if pv is not None else DASH,
            }
        )
    return _strings(rows, ["dataset", "metric", "value", "95% CI", "n_queries", "n_units", "paper"])


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
    or a variant), the recovery rate and its 95% CI, the mean regret and the counts."""
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
            "95% CI": _ci(r["ci_low"], r["ci_high"]),
            "regret": fmt(r["regret"], 4),
            "n_queries": fmt(r["n_queries"]),
            "n_labels": fmt(r["n_labels"]),
        }
        for r in ordered.iter_rows(named=True)
    ]
    return _strings(
        rows,
        ["dataset", "supervision", "k×m", "recovery", "95% CI", "regret", "n_queries", "n_labels"],
    )


def _wide_by_family(
    frame: pl.DataFrame, dataset: str, key_cols: Sequence[str], label: Callable[[tuple], str]
) -> pl.DataFrame:
    sub = frame.filter(pl.col("dataset") == dataset)
    keys = sub.select(*key_cols).unique().sort(*key_cols).rows()
    cell = {
        (r["family"], r["view"], tuple(r[k] for k in key_cols)): r["U"]
        for r in sub.iter_rows(named=True)
    }
    families = plots.order_families(sub["family"].to_list())
    views = [v for v in VIEW_SHORT if v in set(sub["view"].to_list())]
    rows = []
    for fam in families:
        for view in views:
            row = {"router": fam, "view": VIEW_SHORT[view]}
            for k in keys:
                if (fam, view, k) in cell:
                    row[label(k)] = fmt(cell[(fam, view, k)])
            rows.append(row)
    return _strings(rows, ["router", "view", *[label(k) for k in keys]])


def sample_efficiency_table(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Fig 4a's numbers for one dataset: one row per (family, view), one column per training
    protocol ``k×m`` (ordered by n_obs = k·m), cells the test utility U of the DARS router."""
    return _wide_by_family(frame, dataset, ("n_obs", "k", "m"), lambda k: f"{k[1]}×{k[2]}")


def beta_table(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Fig 4c's numbers for one dataset: one row per (family, view), one column per training β,
    cells the test utility U of the DARS router trained with that β."""
    return _wide_by_family(frame, dataset, ("beta",), lambda k: f"β={k[0]:g}")


def budget_table(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """The budget-constrained frontier for one dataset from the ``pareto_budget`` result: one
    row per (view, family, mode), one column per mean-cost budget, cells the best mean quality
    Q reachable with mean normalised cost C ≤ budget ("—": no λ meets the budget); for the
    fixed-model rows the cell names the model when the result has a ``model`` column."""
    sub = frame.filter(pl.col("dataset") == dataset)
    budgets = sorted(set(sub["budget"].to_list()))
    cell = {}
    for r in sub.iter_rows(named=True):
        text = fmt(r["Q"])
        if r["Q"] is not None and r.get("model"):
            text += f" ({r['model']})"  # fixed rows: which model is best within the budget
        cell[(r["view"], r["family"], r["mode"], r["budget"])] = text
    mode_order = {"single_shot": 0, "dars": 1, "fixed": 2}
    views = list(VIEW_SHORT)
    fam_rank = {
        f: i for i, f in enumerate(plots.order_families(sub["family"].drop_nulls().to_list()))
    }
    keys = sorted(
        {(r["view"], r["family"], r["mode"]) for r in sub.iter_rows(named=True)},
        key=lambda k: (
            views.index(k[0]) if k[0] in views else len(views),
            mode_order.get(k[2], len(mode_order)),
            fam_rank.get(k[1], len(fam_rank)),
            str(k[1]),
        ),
    )
    label = {b: f"C≤{b:g}" for b in budgets}
    rows = []
    for view, fam, mode in keys:
        row = {
            "view": VIEW_SHORT.get(view, view),
            "router": fam if fam is not None else DASH,
            "supervision": mode,
        }
        for b in budgets:
            row[label[b]] = cell.get((view, fam, mode, b), DASH)
        rows.append(row)
    return _strings(rows, ["view", "router", "supervision", *label.values()])


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
    pidx = _paper_columns(paper)
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
    return _strings(rows, ["dataset", "split", "source", *columns])


_TABLE5_COLUMNS = (
    "records",
    "rewrites",
    "complete",
    "orig_dup",
    "rew_dup",
    "sim_mean",
    "sim_p05",
    "num_preserved",
    "struct_pass",
    "review_flag",
)
_TABLE6_COLUMNS = (
    "rows",
    "ok_rows",
    "parse_success",
    "finite",
    "in_unit_interval",
    "score_type",
    "rescored",
    "rescore_agreement",
    "rescore_diffs",
    "duplicate_keys",
)


# ------------------------------------------------------------------------------------------------
# the document
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Text:
    text: str  # Markdown subset: `code`, **bold**, *italic*


@dataclass(frozen=True)
class _Note:
    text: str


@dataclass(frozen=True)
class _Code:
    text: str
    lang: str


@dataclass(frozen=True)
class _Table:
    frame: pl.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class _Image:
    name: str  # file stem under report/
    png: bytes
    caption: str


@dataclass
class Report:
    """A laid-out report: a title and blocks in order (headings, text, notes, tables whose
    cells are display strings, figures with their PNG bytes)."""

    title: str
    blocks: list[Any] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(_Heading(level, text))

    def p(self, text: str) -> None:
        self.blocks.append(_Text(text))

    def note(self, text: str) -> None:
        self.blocks.append(_Note(text))

    def code(self, text: str, lang: str = "") -> None:
        self.blocks.append(_Code(text, lang))

    def table(self, frame: pl.DataFrame, caption: str = "") -> None:
        self.blocks.append(_Table(frame, caption))

    def figure(self, name: str, fig: Any, caption: str) -> None:
        self.blocks.append(_Image(name, plots.png_bytes(fig), caption))

    @property
    def figures(self) -> list[_Image]:
        return [b for b in self.blocks if isinstance(b, _Image)]

    @property
    def headings(self) -> list[str]:
        return [b.text for b in self.blocks if isinstance(b, _Heading)]


def _missing(doc: Report, name: str, results: Mapping[str, pl.DataFrame | None]) -> bool:
    """Add a note and return True when result ``name`` cannot be shown."""
    frame = results.get(name)
    command = f"dars experiment {PRODUCED_BY.get(name, name)}"
    if frame is None:
        doc.note(f"Result `{name}` is missing (no `results/{name}.parquet`); run `{command}`.")
        return True
    if frame.height == 0:
        doc.note(f"Result `{name}` has no rows; rerun `{command}`.")
        return True
    return False


def _datasets(main: pl.DataFrame, ctx: Mapping[str, Any] | None) -> list[str]:
    present = main["dataset"].unique(maintain_order=True).to_list()
    ordered = [b["name"] for b in (ctx or {}).get("benchmarks", []) if b["name"] in present]
    return ordered + sorted(set(present) - set(ordered))


def _settings_differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Names of the settings on which two run contexts differ: the config's top-level fields
    when both recorded the config (the other context keys derive from it), else the context's
    own keys; the write time never counts."""
    if isinstance(a.get("config"), dict) and isinstance(b.get("config"), dict):
        a, b = a["config"], b["config"]
    return sorted(k for k in set(a) | set(b) if k != "written_at" and a.get(k) != b.get(k))


def _setup(
    doc: Report,
    ctx: Mapping[str, Any] | None,
    contexts: Mapping[str, Mapping[str, Any] | None],
    results: Mapping[str, pl.DataFrame | None],
    datasets: Sequence[str],
    mapping: Mapping[str, str | None],
    *,
    root: str,
    written_at: str,
) -> None:
    doc.h(2, SECTION_TITLES[0])
    doc.p(f"Report written {written_at} from the result tables in `{root}/results`.")
    if ctx is None:
        doc.note(
            "The run context (pool, protocol, λ, β) was not recorded with these results: they "
            "were written by an older version of dars. Rerun `dars experiment main` to record it."
        )
    else:
        proto = ctx.get("protocol", {})
        train = f"{proto.get('train_rewrites')} rewrites × {proto.get('train_decodes')} decodes"
        if proto.get("train_include_original"):
            train += " (plus the original query)"
        rows = [
            ("experiment", f"`{ctx.get('experiment')}`"),
            (
                "pool",
                "simulated (litellm provider `dars-sim`, known ground truth)"
                if ctx.get("simulated")
                else "real LLMs through litellm",
            ),
            ("rewriter", f"`{ctx.get('rewriter')}`"),
            ("training protocol (K × M per query and model)", train),
            (
                "test views",
                f"rewrite view (`_rew`): {proto.get('test_rewrites')} rewrites × "
                f"{proto.get('test_rewrite_decodes')} decode; decode view (`_dec`): original "
                f"query × {proto.get('test_decodes')} decodes",
            ),
            ("decoding", f"temperature {proto.get('temperature')}, top_p {proto.get('top_p')}"),
            ("λ (cost weight)", fmt(ctx.get("lam"), 3)),
            ("β (risk weight)", fmt(ctx.get("beta"), 3)),
            ("single-shot draws", fmt(ctx.get("single_shot_draws"))),
            ("seed", fmt(ctx.get("seed"))),
        ]
        doc.table(_strings([{"setting": k, "value": v} for k, v in rows], ["setting", "value"]))
        pool = ctx.get("pool", {})
        doc.table(
            _strings(
                [{"model": m, "litellm route": f"`{route}`"} for m, route in pool.items()],
                ["model", "litellm route"],
            ),
            caption=f"Pool ({len(pool)} models).",
        )
    sizes = {b["name"]: b for b in (ctx or {}).get("benchmarks", [])}
    doc.table(
        _strings(
            [
                {
                    "benchmark": d,
                    "n_train": fmt(sizes.get(d, {}).get("n_train")),
                    "n_test": fmt(sizes.get(d, {}).get("n_test")),
                    "paper's counterpart": mapping.get(d) or DASH,
                }
                for d in datasets
            ],
            ["benchmark", "n_train", "n_test", "paper's counterpart"],
        ),
        caption="Benchmarks (n_test: all remaining items when —).",
    )
    used = []
    for name in RESULT_NAMES:
        frame = results.get(name)
        c = contexts.get(name)
        used.append(
            {
                "result": f"`{name}`",
                "rows": fmt(frame.height) if frame is not None else "missing",
                "written (UTC)": (c or {}).get("written_at", DASH),
                "produced by": f"`dars experiment {PRODUCED_BY.get(name, name)}`",
            }
        )
    doc.table(
        _strings(used, ["result", "rows", "written (UTC)", "produced by"]),
        caption="Result tables read by this report.",
    )
    if ctx is not None:
        for name, c in contexts.items():
            if c is None or c is ctx:
                continue
            differs = _settings_differ(ctx, c)
            if differs:
                doc.note(
                    f"Result `{name}` was written with settings that differ from `main` "
                    f"({', '.join(differs)}): rerun the experiments for one consistent report."
                )
    config = (ctx or {}).get("config")
    if config is not None:
        doc.h(3, "Configuration")
        doc.p(
            "The experiment configuration these results were produced with (as loaded, defaults "
            "filled in; API keys are never part of it, only the names of their variables)."
        )
        doc.code(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), "yaml")
    paper = paper_figures()["setup"]
    pairs = [f"{d} ≙ {p}" for d, p in mapping.items() if p]
    if pairs:
        text = _PAPER_NOTE.format(pool=", ".join(paper["pool"]), mapping=", ".join(pairs))
        if ctx is None or ctx.get("simulated"):
            text += (
                " Our pool is simulated, so the paper's numbers are a reference for scale and "
                "direction, not a target this run reproduces."
            )
        doc.p(text)


def _main_section(
    doc: Report,
    main: pl.DataFrame,
    datasets: Sequence[str],
    mapping: Mapping[str, str | None],
    ctx: Mapping[str, Any] | None,
) -> None:
    doc.h(2, SECTION_TITLES[1])
    lam = fmt((ctx or {}).get("lam"))
    draws = main.filter(pl.col("mode") == "single_shot")["n_draws"].drop_nulls()
    n_draws = fmt(int(draws.max())) if draws.len() else DASH
    doc.p(
        f"U is the mean test utility q − λ·c (λ = {lam}, c the normalised cost) over test queries "
        "of the model each router picks, on the rewrite view (`_rew`) and the decode view "
        f"(`_dec`). Single-shot cells are mean ± std over {n_draws} routers, each trained on one "
        "randomly drawn observation per (query, model); DARS rows are one router trained on "
        "distribution-aware labels."
    )
    doc.h(3, "Table 1: test utility by router family and supervision")
    doc.table(main_table(main, datasets))
    cmp = single_shot_comparison(main)
    if cmp.height:
        doc.p(
            f"DARS is above the single-shot mean in **{int((cmp['delta'] > 0).sum())} of "
            f"{cmp.height}** (family, dataset, view) cells and above mean + 1 std in "
            f"{int(cmp['above_1sd'].sum())}; mean DARS − single-shot difference "
            f"{cmp['delta'].mean():+.3f} (range {cmp['delta'].min():+.3f} to "
            f"{cmp['delta'].max():+.3f})."
        )
    families = plots.order_families(
        main.filter(pl.col("mode").is_in(["single_shot", "dars"]))["family"].to_list()
    )
    paper = paper_main_table(families, datasets, mapping)
    if paper is not None:
        doc.h(3, "Paper's Table 1 (paper's pool and benchmarks, for comparison)")
        doc.table(paper)
    for d in datasets:
        doc.h(3, f"Table 4: detail — {d}")
        doc.table(main_detail_table(main, d))


def _ablation_section(
    doc: Report,
    results: Mapping[str, pl.DataFrame | None],
    datasets: Sequence[str],
    mapping: Mapping[str, str | None],
) -> None:
    doc.h(2, SECTION_TITLES[2])
    if _missing(doc, "ablation", results):
        return
    ablation = results["ablation"]
    assert ablation is not None
    doc.p(
        "Test utility U of one router family trained on each supervision variant: single-shot "
        "labels; `input_only` (one decode per rewrite); `output_only` (the decodes of one "
        "formulation); `without_risk` (β = 0); `rewrite_risk` (σ across rewrite means); "
        "`decoding_risk` (mean within-rewrite σ); `full_dars` (all K×M, σ over all). `average` "
        "is the mean over the columns (blank unless every column has a value)."
    )
    present = [d for d in datasets if d in set(ablation["dataset"].to_list())]
    for fam in plots.order_families(ablation["family"].unique().to_list()):
        sub = ablation_table(ablation.filter(pl.col("family") == fam), present)
        doc.h(3, f"Table 2: supervision ablation — {fam}")
        doc.table(
            sub.select(
                "variant",
                *[pl.col(c).map_elements(fmt, return_dtype=pl.String) for c in sub.columns[1:]],
            )
        )
    paper = _paper_ablation_table(datasets, mapping)
    if paper is not None:
        doc.h(3, "Paper's Table 2 (MIRT, paper's pool and benchmarks)")
        doc.table(paper)


def _diagnostics_section(
    doc: Report,
    results: Mapping[str, pl.DataFrame | None],
    datasets: Sequence[str],
    mapping: Mapping[str, str | None],
    ctx: Mapping[str, Any] | None,
) -> None:
    doc.h(2, SECTION_TITLES[3])
    main = results["main"]
    assert main is not None
    if not _missing(doc, "diagnostics", results):
        diag = results["diagnostics"]
        assert diag is not None
        doc.p(
            "How unstable single sampled outcomes are as training labels, on the training "
            "queries: outcome instability (share of (query, model) cells whose sampled outcomes "
            "disagree), winner flip rate (share of queries whose best model changes between "
            "single draws), single-shot vs distribution-aware label disagreement, and the split "
            "of quality variance into input-side (across rewrites) and output-side (across "
            "decodes)."
        )
        if diag.filter(pl.col("metric").is_in(plots.INSTABILITY_METRICS)).height:
            doc.figure(
                "fig2a_instability",
                plots.instability_bars(diag, datasets=datasets, paper=_paper_diagnostics(mapping)),
                "Fig 2a: label-instability metrics per dataset (95% bootstrap CI over queries); "
                "black ticks: the paper's values for the dataset of the same task type.",
            )
        else:
            doc.note("No instability metrics in `diagnostics`; Fig 2a not drawn.")
        if diag.filter(pl.col("metric").is_in(plots.VARIANCE_METRICS)).height:
            doc.figure(
                "fig2b_variance",
                plots.variance_bars(diag, datasets=datasets),
                "Fig 2b: input-side vs output-side variance of quality per dataset (95% CI).",
            )
        else:
            doc.note("No variance metrics in `diagnostics`; Fig 2b not drawn.")
        doc.h(3, "Diagnostics table (ours vs the paper's)")
        doc.table(diagnostics_table(diag, mapping))
        doc.p(f"Paper: {paper_figures()['diagnostics']['variance_split']}.")
    if not _missing(doc, "single_shot_distribution", results):
        dist = results["single_shot_distribution"]
        assert dist is not None
        doc.figure(
            "fig2c_single_shot",
            plots.single_shot_violins(dist, main, datasets=datasets),
            "Fig 2c: distribution of test utility over the single-shot routers of each family "
            "(one per draw), with the DARS router (red diamond) and the best fixed model "
            "(dashed).",
        )
    doc.h(3, "Label recovery (simulated pool: ground truth known)")
    if results.get("recovery") is None and ctx is not None and not ctx.get("simulated"):
        doc.p("Not applicable: a real pool has no ground-truth capability to recover.")
    elif not _missing(doc, "recovery", results):
        rec = results["recovery"]
        assert rec is not None
        doc.p(
            "Share of training queries whose label is a truly best model under the simulator's "
            "ground-truth utility (single-shot: mean over draws), per supervision variant and "
            "k×m sub-protocol; regret is the mean true-utility gap between the best model and "
            "the label."
        )
        doc.table(recovery_table(rec, datasets))


def _ci_width(frame: pl.DataFrame) -> str:
    half = ((frame["U_high"] - frame["U_low"]) / 2).drop_nulls().drop_nans()
    if half.len() == 0:
        return "no confidence intervals recorded."
    return (
        f"median half-width of the 95% CIs over test queries {half.median():.3f} "
        f"(range {half.min():.3f}–{half.max():.3f}; per point in `results/`)."
    )


def _sample_efficiency_section(
    doc: Report, results: Mapping[str, pl.DataFrame | None], datasets: Sequence[str]
) -> None:
    doc.h(2, SECTION_TITLES[4])
    if _missing(doc, "sample_efficiency", results):
        return
    se = results["sample_efficiency"]
    assert se is not None
    doc.p(
        "DARS routers trained on sub-protocols of k rewrites × m decodes per (query, model), "
        "evaluated on the full test views."
    )
    doc.figure(
        "fig4a_sample_efficiency",
        plots.sample_efficiency_curves(se, datasets=datasets),
        f"Fig 4a: test utility against the training protocol k×m; {_ci_width(se)}",
    )
    for d in [d for d in datasets if d in set(se["dataset"].to_list())]:
        doc.h(3, f"Sample efficiency — {d} (U)")
        doc.table(sample_efficiency_table(se, d))


def _pareto_section(
    doc: Report, results: Mapping[str, pl.DataFrame | None], datasets: Sequence[str]
) -> None:
    doc.h(2, SECTION_TITLES[5])
    if not _missing(doc, "pareto", results):
        pareto = results["pareto"]
        assert pareto is not None
        doc.p(
            "Mean quality Q against mean normalised cost C of routers trained with each cost "
            "weight λ of the sweep (single-shot: mean over draws), with the pool's fixed models "
            "as points."
        )
        present = set(pareto["dataset"].to_list())
        for d in [d for d in datasets if d in present] + sorted(present - set(datasets)):
            doc.figure(
                f"fig4b_pareto_{d}",
                plots.pareto_frontiers(pareto, d),
                f"Fig 4b: cost–quality frontiers on {d}, single-shot (dashed) vs DARS (solid); "
                "crosses: fixed models.",
            )
    doc.h(3, "Best quality under a mean-cost budget")
    if not _missing(doc, "pareto_budget", results):
        budget = results["pareto_budget"]
        assert budget is not None
        present = set(budget["dataset"].to_list())
        doc.p(
            "Best mean quality Q over the λ sweep among settings whose mean normalised cost C "
            "stays within each budget (fixed: the best single model within the budget)."
        )
        for d in [d for d in datasets if d in present] + sorted(present - set(datasets)):
            doc.h(4, f"Budget table — {d}")
            doc.table(budget_table(budget, d))


def _beta_section(
    doc: Report,
    results: Mapping[str, pl.DataFrame | None],
    datasets: Sequence[str],
    ctx: Mapping[str, Any] | None,
) -> None:
    doc.h(2, SECTION_TITLES[6])
    if _missing(doc, "beta", results):
        return
    beta = results["beta"]
    assert beta is not None
    default = (ctx or {}).get("beta")
    doc.p("DARS routers trained with each risk weight β of the sweep (labels u = μ − λc̄ − βσ).")
    doc.figure(
        "fig4c_beta",
        plots.beta_curves(beta, default_beta=default, datasets=datasets),
        f"Fig 4c: test utility against β; dotted: the run's β; {_ci_width(beta)}",
    )
    for d in [d for d in datasets if d in set(beta["dataset"].to_list())]:
        doc.h(3, f"β sensitivity — {d} (U)")
        doc.table(beta_table(beta, d))


def _validity_section(
    doc: Report, results: Mapping[str, pl.DataFrame | None], mapping: Mapping[str, str | None]
) -> None:
    doc.h(2, SECTION_TITLES[7])
    doc.h(3, "Table 5: rewrite validity")
    if not _missing(doc, "rewrite_validity", results):
        frame = results["rewrite_validity"]
        assert frame is not None
        doc.table(
            validity_table(frame, _TABLE5_COLUMNS, "table5_rewrite_validity", mapping),
            caption="Per (dataset, split): records, rewrites, share complete, duplicate shares, "
            "embedding similarity to the original (mean, 5th percentile), share of numbers "
            "preserved, structure checks passed, share flagged for review.",
        )
    doc.h(3, "Table 6: scoring validity")
    if not _missing(doc, "scoring_validity", results):
        frame = results["scoring_validity"]
        assert frame is not None
        doc.table(
            validity_table(frame, _TABLE6_COLUMNS, "table6_scoring_validity", mapping),
            caption="Per (dataset, split): observation rows, ok rows, parse success, finite and "
            "in-[0, 1] scores, score-type consistency, rescoring agreement and differences, "
            "duplicate keys.",
        )


def build_report(
    results: Mapping[str, pl.DataFrame | None],
    contexts: Mapping[str, Mapping[str, Any] | None],
    *,
    root: str,
    written_at: str,
) -> Report:
    """Lay out the report (no I/O). ``results``: result name → table, or None when missing
    (``main`` must be present); ``contexts``: result name → the run context stored with it, or
    None when the result or its context is missing; ``root`` and ``written_at`` are printed."""
    main = results.get("main")
    if main is None:
        raise ResultMissingError("result 'main' is missing; run `dars experiment main`")
    ctx = contexts.get("main") or next((c for c in contexts.values() if c), None)
    datasets = _datasets(main, ctx)
    mapping = {d: paper_dataset(d) for d in datasets}
    title = f"DARS report — {ctx['experiment']}" if ctx else "DARS report"
    doc = Report(title)
    _setup(doc, ctx, contexts, results, datasets, mapping, root=root, written_at=written_at)
    _main_section(doc, main, datasets, mapping, ctx)
    _ablation_section(doc, results, datasets, mapping)
    _diagnostics_section(doc, results, datasets, mapping, ctx)
    _sample_efficiency_section(doc, results, datasets)
    _pareto_section(doc, results, datasets)
    _beta_section(doc, results, datasets, ctx)
    _validity_section(doc, results, mapping)
    return doc


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
_NUMERIC = re.compile(r"^[-+±\[]?\s*\d")


def _is_numeric_column(values: Sequence[str]) -> bool:
    cells = [v for v in values if v != DASH]
    return bool(cells) and all(_NUMERIC.match(v) for v in cells)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    align = (
        "|"
        + "|".join(
            "---:" if _is_numeric_column(frame[c].to_list()) else "---" for c in frame.columns
        )
        + "|"
    )
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.rows()]
    return "\n".join([head, align, *body])


def render_markdown(doc: Report) -> str:
    """The report as Markdown; figures are referenced as ``<name>.png`` beside the file."""
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, _Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, _Text):
            out += [b.text, ""]
        elif isinstance(b, _Note):
            out += [f"> **Note:** {b.text}", ""]
        elif isinstance(b, _Code):
            out += [f"```{b.lang}", b.text.rstrip("\n"), "```", ""]
        elif isinstance(b, _Table):
            out += [_md_table(b.frame), ""]
            if b.caption:
                out += [f"*{b.caption}*", ""]
        elif isinstance(b, _Image):
            out += [f"![{b.caption}]({b.name}.png)", "", f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline_html(text: str) -> str:
    s = html.escape(text, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<em>\1</em>", s)


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}
caption{caption-side:bottom;font-style:italic;font-size:.9em;text-align:left;padding-top:.3em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-style:italic;font-size:.9em}
.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.4em .8em}
code{background:#f3f3f3;padding:0 .2em}nav ul{columns:2}
"""


def render_html(doc: Report) -> str:
    """The report as one self-contained HTML page: inline CSS, tables as HTML tables, figures
    embedded as base64 ``data:`` URIs (no reference to any other file)."""
    used: set[str] = set()
    body: list[str] = []
    toc: list[str] = []
    for b in doc.blocks:
        if isinstance(b, _Heading):
            slug = _slug(b.text, used)
            body.append(f'<h{b.level} id="{slug}">{_inline_html(b.text)}</h{b.level}>')
            if b.level == 2:
                toc.append(f'<li><a href="#{slug}">{_inline_html(b.text)}</a></li>')
        elif isinstance(b, _Text):
            body.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, _Note):
            body.append(f'<p class="note"><strong>Note:</strong> {_inline_html(b.text)}</p>')
        elif isinstance(b, _Code):
            body.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
        elif isinstance(b, _Table):
            numeric = [_is_numeric_column(b.frame[c].to_list()) for c in b.frame.columns]
            rows = ["<table>"]
            if b.caption:
                rows.append(f"<caption>{_inline_html(b.caption)}</caption>")
            rows.append(
                "<thead><tr>"
                + "".join(f"<th>{_inline_html(c)}</th>" for c in b.frame.columns)
                + "</tr></thead><tbody>"
            )
            for row in b.frame.rows():
                cells = "".join(
                    f'<td class="num">{_inline_html(v)}</td>'
                    if num
                    else f"<td>{_inline_html(v)}</td>"
                    for v, num in zip(row, numeric, strict=True)
                )
                rows.append(f"<tr>{cells}</tr>")
            rows.append("</tbody></table>")
            body.append("\n".join(rows))
        elif isinstance(b, _Image):
            data = base64.b64encode(b.png).decode("ascii")
            alt = html.escape(b.caption)
            body.append(
                f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>"
            )
    title = html.escape(doc.title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n<nav><ul>{''.join(toc)}</ul></nav>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# ------------------------------------------------------------------------------------------------
# I/O
# ------------------------------------------------------------------------------------------------
def _context(root: str | Path, name: str) -> dict[str, Any] | None:
    try:
        return read_context(root, name)
    except (ResultMissingError, KeyError):
        return None  # not written yet, or written before results carried their context


def write_report(root: str | Path) -> Path:
    """Write ``report/index.md``, ``report/index.html`` and the figures (``report/fig*.png``)
    for the run under ``root`` from its ``results/`` tables; returns the path of index.md.

    Raises :class:`ResultMissingError` when the ``main`` result is missing (nothing to
    report); any other missing result becomes a note naming the command that writes it.
    Figures of an earlier report that this one no longer draws are removed.
    """
    layout = RunLayout(root)
    results = {
        name: read_result(root, name) if result_exists(root, name) else None
        for name in RESULT_NAMES
    }
    if results["main"] is None:
        read_result(root, "main")  # raises ResultMissingError naming the file and the command
    contexts = {name: _context(root, name) for name, frame in results.items() if frame is not None}
    written_at = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = build_report(results, contexts, root=str(root), written_at=written_at)
    keep = set()
    for fig in doc.figures:
        path = layout.report_file(fig.name, "png")
        atomic_write_bytes(fig.png, path)
        keep.add(path)
    for stale in layout.report_files("png"):
        if stale not in keep:
            stale.unlink(missing_ok=True)
    atomic_write_text(render_html(doc), layout.report_file("index", "html"))
    md = layout.report_file("index", "md")
    atomic_write_text(render_markdown(doc), md)
    return md
