"""The demo's headline figures (the README's Quickstart list), computed from the result frames.

:func:`headline_numbers` takes the result tables of a run (``results/<name>.parquet`` as
frames, keyed by result name) and returns the figures as a plain dict; :func:`render_headline`
lays them out as Markdown. Nothing here reads a file: :mod:`dars.tasks.headline` does, and
writes ``docs/demo_numbers.md`` (``dars readme-numbers``), so the README's numbers are
generated from a run rather than typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from dars.evaluation.paper import paper_dataset, paper_figures

__all__ = ["HEADLINE_RESULTS", "REFERENCE_FAMILIES", "headline_numbers", "render_headline"]

#: Rows of ``main`` that are reference policies, not trained routers.
REFERENCE_FAMILIES = ("best_fixed", "oracle", "random")
_CELL = ["dataset", "view", "family"]


def _dars_vs_single(frame: pl.DataFrame, key: list[str], value: str) -> pl.DataFrame:
    """One row per ``key`` present for both ``dars`` and ``single_shot`` supervision, with
    ``dars`` and ``single`` (the two rows' ``value``) and ``win`` (DARS strictly higher)."""

    def side(supervision: str, name: str) -> pl.DataFrame:
        rows = frame.filter(pl.col("supervision") == supervision)
        return rows.select(*key, pl.col(value).alias(name))

    return (
        side("dars", "dars")
        .join(side("single_shot", "single"), on=key)
        .with_columns(win=pl.col("dars") > pl.col("single"))
    )


def _wins_by(cells: pl.DataFrame, column: str) -> dict[str, tuple[int, int]]:
    """``column`` value → (DARS wins, cells), sorted by value."""
    counts = cells.group_by(column).agg(wins=pl.col("win").sum(), cells=pl.len()).sort(column)
    return {r[column]: (int(r["wins"]), int(r["cells"])) for r in counts.to_dicts()}


def _main(main: pl.DataFrame) -> dict[str, Any]:
    """``main``: one row per (dataset, view, family, supervision) with its test utility ``U``
    (for ``single_shot`` the mean over its draws). A cell is a (dataset, view, family) of a
    trained router family; DARS wins a cell when its ``U`` exceeds the mean single-shot ``U``."""
    best = main.filter(pl.col("family") == "best_fixed").select(
        "dataset", "view", pl.col("U").alias("best")
    )
    routers = main.filter(~pl.col("family").is_in(REFERENCE_FAMILIES))
    cells = _dars_vs_single(routers, _CELL, "U").join(best, on=["dataset", "view"], how="left")
    gain = cells["dars"] - cells["single"]
    return {
        "cells": cells.height,
        "dars_wins": int(cells["win"].sum()),
        "mean_gain": float(gain.mean()) if cells.height else float("nan"),
        "per_dataset": _wins_by(cells, "dataset"),
        "dars_ge_best_fixed": int((cells["dars"] >= cells["best"]).sum()),
        "single_ge_best_fixed": int((cells["single"] >= cells["best"]).sum()),
    }


def _pareto_budget(frame: pl.DataFrame) -> dict[str, Any]:
    """``pareto_budget``: one row per (dataset, view, family, supervision, budget) with the
    quality ``Q`` the router reaches under that mean-cost budget; DARS wins a budget cell when
    its ``Q`` exceeds the single-shot router's."""
    cells = _dars_vs_single(frame, [*_CELL, "budget"], "Q")
    return {
        "cells": cells.height,
        "dars_wins": int(cells["win"].sum()),
        "per_family": _wins_by(cells, "family"),
    }


def _sample_efficiency(frame: pl.DataFrame) -> dict[str, float]:
    """``sample_efficiency``: one row per (dataset, view, family, k, m); the mean ``U`` over
    cells for each k×m grid, keyed ``"<k>x<m>"``."""
    means = frame.group_by("k", "m").agg(pl.col("U").mean()).sort("k", "m")
    return {f"{r['k']}x{r['m']}": float(r["U"]) for r in means.to_dicts()}


def _beta(frame: pl.DataFrame) -> dict[str, float]:
    """``beta``: one row per (dataset, view, family, beta); the grand mean ``U`` per β (its
    min and max over β) and the largest range over β of a single (dataset, view, family)."""
    grand = frame.group_by("beta").agg(pl.col("U").mean())["U"]
    single = frame.group_by(_CELL).agg(span=pl.col("U").max() - pl.col("U").min())["span"]
    return {
        "grand_min": float(grand.min()),
        "grand_max": float(grand.max()),
        "max_single_range": float(single.max()),
    }


def _diagnostics(frame: pl.DataFrame) -> dict[str, dict[str, float]]:
    """``diagnostics``: one row per (dataset, metric, definition); the default definition's
    value per dataset and metric."""
    rows = frame.filter(pl.col("is_default")).select("dataset", "metric", "value").to_dicts()
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["dataset"], {})[r["metric"]] = float(r["value"])
    return dict(sorted(out.items()))


def _recovery(frame: pl.DataFrame) -> dict[str, dict[str, float]]:
    """``recovery``: one row per (dataset, supervision); the share of queries whose label picks
    the truly best model, for ``full_dars`` and ``single_shot`` per dataset."""
    rows = (
        frame.filter(pl.col("supervision").is_in(["full_dars", "single_shot"]))
        .select("dataset", "supervision", "recovery")
        .to_dicts()
    )
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["dataset"], {})[r["supervision"]] = float(r["recovery"])
    return dict(sorted(out.items()))


_PARTS = {
    "diagnostics": _diagnostics,
    "recovery": _recovery,
    "main": _main,
    "pareto_budget": _pareto_budget,
    "sample_efficiency": _sample_efficiency,
    "beta": _beta,
}


#: The result tables the headline figures come from.
HEADLINE_RESULTS = tuple(_PARTS)


def headline_numbers(results: Mapping[str, pl.DataFrame | None]) -> dict[str, Any]:
    """The headline figures of a run from its result frames (keys as ``results/`` names:
    ``diagnostics``, ``recovery``, ``main``, ``pareto_budget``, ``sample_efficiency``,
    ``beta``). A result that is missing (absent or ``None``) gives no entry."""
    return {
        name: part(results[name]) for name, part in _PARTS.items() if results.get(name) is not None
    }


def _f(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _counts(by: Mapping[str, tuple[int, int]]) -> str:
    return ", ".join(f"{name} {wins}/{cells}" for name, (wins, cells) in by.items())


_DIAGNOSTIC_LABELS = (
    ("outcome_instability", "instability"),
    ("winner_flip_rate", "flip"),
    ("single_vs_da_disagreement", "disagreement"),
)


def _paper_diagnostics(dataset: str) -> str:
    """The paper's stated diagnostics for the dataset of ``dataset``'s task type, as text
    (``"gpqa: instability 0.715, flip 0.970"``); empty when it states none."""
    name = paper_dataset(dataset)
    stated = paper_figures()["diagnostics"].get(name) if name else None
    if not stated:
        return ""
    vals = ", ".join(f"{label} {_f(stated[k])}" for k, label in _DIAGNOSTIC_LABELS if k in stated)
    return f"{name}: {vals}"


def render_headline(numbers: Mapping[str, Any], run: Mapping[str, str] | None = None) -> str:
    """Markdown for ``docs/demo_numbers.md``: the figures of :func:`headline_numbers`, one
    bullet per experiment, then the run facts given in ``run`` (label → text, e.g. wall time,
    machine, load) when any."""
    lines = [
        "# Demo headline numbers",
        "",
        "Generated by `dars readme-numbers` from the run's `results/` tables; do not edit by hand.",
        "",
    ]
    if "diagnostics" in numbers:
        parts = []
        for ds, m in numbers["diagnostics"].items():
            vals = ", ".join(f"{label} {_f(m[k])}" for k, label in _DIAGNOSTIC_LABELS if k in m)
            paper = _paper_diagnostics(ds)
            if paper:
                vals += f" (paper, {paper})"
            parts.append(f"{ds}: {vals}")
        lines.append("- Diagnostics (paper definitions): " + "; ".join(parts) + ".")
    if "recovery" in numbers:
        parts = [
            f"{ds} {_f(r['full_dars'])} vs {_f(r['single_shot'])}"
            for ds, r in numbers["recovery"].items()
            if "full_dars" in r and "single_shot" in r
        ]
        lines.append("- Label recovery, DARS vs single-shot: " + "; ".join(parts) + ".")
    if "main" in numbers:
        m = numbers["main"]
        per = _counts(m["per_dataset"])
        lines.append(
            f"- Main table: DARS beats the mean single-shot router in {m['dars_wins']} of "
            f"{m['cells']} (family, dataset, view) cells, by {m['mean_gain']:+.3f} U on average "
            f"({per}); DARS matches or beats the best fixed model in {m['dars_ge_best_fixed']} "
            f"cells, the mean single-shot router in {m['single_ge_best_fixed']}."
        )
    if "pareto_budget" in numbers:
        p = numbers["pareto_budget"]
        lines.append(
            f"- Cost–quality: DARS routers reach higher quality than single-shot ones in "
            f"{p['dars_wins']} of {p['cells']} (family, dataset, view, budget) cells "
            f"({_counts(p['per_family'])})."
        )
    if "sample_efficiency" in numbers:
        se = numbers["sample_efficiency"]
        lines.append(
            "- Sample efficiency, mean U by k×m grid: "
            + ", ".join(f"{k} {_f(v)}" for k, v in se.items())
            + "."
        )
    if "beta" in numbers:
        b = numbers["beta"]
        lines.append(
            f"- β ∈ [0, 1]: grand mean U {_f(b['grand_min'])} – {_f(b['grand_max'])} "
            f"(range {_f(b['grand_max'] - b['grand_min'])}); single (family, dataset, view) "
            f"curves move by up to {_f(b['max_single_range'])}."
        )
    if run:
        lines += ["", "## Run", ""]
        lines += [f"- {label}: {text}" for label, text in run.items()]
    return "\n".join(lines) + "\n"
