"""The report's figures (the paper's Fig 2 a–c and Fig 4 a–c), drawn from result tables.

Every function takes result frames (the tables declared by the experiments of
:mod:`dars.evaluation.experiments`) and returns a :class:`matplotlib.figure.Figure`; nothing
here reads files, writes files or touches pyplot's global state (figures are built with
``Figure`` directly, so no backend or interactive session is involved). :func:`png_bytes`
renders a figure to PNG deterministically (fixed DPI, no software/time metadata), which is what
the report embeds.

Panels follow one convention: rows are the two test views (rewrite, decode), columns are
datasets (or router families for the Pareto figure); colours identify router families and are
the same in every figure.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dars.evaluation.metrics import FAMILY_ORDER, order_families

__all__ = [
    "FAMILY_ORDER",
    "INSTABILITY_METRICS",
    "VARIANCE_METRICS",
    "VIEW_LABELS",
    "beta_curves",
    "family_colours",
    "instability_bars",
    "order_families",
    "pareto_frontiers",
    "png_bytes",
    "sample_efficiency_curves",
    "single_shot_violins",
    "variance_bars",
]

VIEW_LABELS = {"test_rewrite": "rewrite view", "test_decode": "decode view"}
INSTABILITY_METRICS = ("outcome_instability", "winner_flip_rate", "single_vs_da_disagreement")
VARIANCE_METRICS = ("input_variance", "output_variance")
_METRIC_LABELS = {
    "outcome_instability": "outcome instability",
    "winner_flip_rate": "winner flip rate",
    "single_vs_da_disagreement": "single-shot vs DA disagreement",
    "input_variance": "input-side (rewrite) variance",
    "output_variance": "output-side (decode) variance",
}
_DPI = 110


def _require(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {frame.columns}")
    if frame.height == 0:
        raise ValueError(f"{what}: no rows to plot")


def family_colours(families: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """A fixed colour per family: the paper's families keep the same colour in every figure
    whatever subset is plotted."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    extra = sorted(set(families) - set(FAMILY_ORDER))
    slots = {f: i for i, f in enumerate(FAMILY_ORDER)}
    slots.update({f: len(FAMILY_ORDER) + i for i, f in enumerate(extra)})
    return {f: cmap(slots[f] % cmap.N) for f in set(families)}


def _views(frame: pl.DataFrame) -> list[str]:
    present = set(frame["view"].unique().to_list())
    return [v for v in VIEW_LABELS if v in present] + sorted(present - set(VIEW_LABELS))


def _datasets(frame: pl.DataFrame, order: Sequence[str] | None) -> list[str]:
    present = frame["dataset"].unique(maintain_order=True).to_list()
    if order:
        return [d for d in order if d in present] + sorted(set(present) - set(order))
    return sorted(present)


def _grid(
    nrows: int, ncols: int, w: float, h: float, *, share: bool = False
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(w * ncols + 0.6, h * nrows + 1.1), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=share, sharey=share)
    return fig, axes


def _legend(fig: Figure, handles: Sequence[Any]) -> None:
    # Below the panels: a legend on the right would widen the figure and push the centred
    # suptitle into it when there are few panels.
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8), fontsize=8)


def _num(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _yerr(values: Sequence[float], lows: Sequence[object], highs: Sequence[object]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    lo = np.asarray([_num(x) for x in lows])
    hi = np.asarray([_num(x) for x in highs])
    # A CI that does not contain its point (rounding, or a metric bootstrapped on another scale)
    # must not produce negative error-bar lengths, which matplotlib rejects.
    return np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])


def _grouped_bars(
    ax: Axes,
    frame: pl.DataFrame,
    datasets: list[str],
    metrics: Sequence[str],
    paper: pl.DataFrame | None,
) -> None:
    from matplotlib import colormaps

    width = 0.8 / len(metrics)
    x = np.arange(len(datasets))
    cmap = colormaps["Set2"]
    paper_drawn = False
    for i, metric in enumerate(metrics):
        rows = {r["dataset"]: r for r in frame.filter(pl.col("metric") == metric).to_dicts()}
        vals = [_num(rows.get(d, {}).get("value")) for d in datasets]
        lows = [rows.get(d, {}).get("ci_low") for d in datasets]
        highs = [rows.get(d, {}).get("ci_high") for d in datasets]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(
            pos,
            vals,
            width,
            yerr=_yerr(vals, lows, highs),
            capsize=3,
            color=cmap(i),
            edgecolor="black",
            linewidth=0.5,
            label=_METRIC_LABELS.get(metric, metric),
        )
        if paper is not None and paper.height:
            prow = {
                r["dataset"]: r["value"]
                for r in paper.filter(pl.col("metric") == metric).rows(named=True)
            }
            px = [p for p, d in zip(pos, datasets, strict=True) if prow.get(d) is not None]
            py = [prow[d] for d in datasets if prow.get(d) is not None]
            if px:
                ax.scatter(
                    px,
                    py,
                    marker="_",
                    s=260,
                    linewidths=2.5,
                    color="black",
                    zorder=5,
                    label=None if paper_drawn else "paper's value (paper's pool)",
                )
                paper_drawn = True
    ax.set_xticks(x, datasets)
    ax.set_xlabel("dataset")
    ax.grid(axis="y", alpha=0.3)


def instability_bars(
    diagnostics: pl.DataFrame,
    *,
    datasets: Sequence[str] | None = None,
    paper: pl.DataFrame | None = None,
) -> Figure:
    """Fig 2a: bars of outcome instability, winner-flip rate and single-vs-DA disagreement per
    dataset with their 95% CIs as error bars.

    ``diagnostics``: rows of the ``diagnostics`` result, one per (dataset, metric), with
    ``value``, ``ci_low``, ``ci_high`` — one definition's rows (e.g. those with ``is_default``),
    since the result holds winner flip and disagreement under each definition (the title names
    the one drawn, from a ``definition`` column when there is one). ``paper``:
    optional rows (dataset, metric, value) — the paper's numbers for the corresponding dataset —
    drawn as black ticks.
    """
    _require(diagnostics, ("dataset", "metric", "value", "ci_low", "ci_high"), "diagnostics")
    frame = diagnostics.filter(pl.col("metric").is_in(INSTABILITY_METRICS))
    _require(frame, ("metric",), "diagnostics (instability metrics)")
    if frame.select(pl.struct("dataset", "metric").is_duplicated().any()).item():
        raise ValueError(
            "diagnostics: more than one row per (dataset, metric); pass the rows of one "
            "definition (e.g. those with is_default)"
        )
    ds = _datasets(frame, datasets)
    fig = Figure(figsize=(max(6.0, 2.2 * len(ds) + 2.5), 4.2), layout="constrained")
    ax = fig.subplots()
    _grouped_bars(ax, frame, ds, INSTABILITY_METRICS, paper)
    ax.set_ylabel("rate over training queries")
    ax.set_ylim(0, 1.08)
    # Name the definition of winner flip and disagreement, so the PNG says it on its own.
    names = (
        frame["definition"].drop_nulls().unique().sort().to_list()
        if "definition" in frame.columns
        else []
    )
    which = f", {'/'.join(names)} definition" if names else ""
    ax.set_title(f"Fig 2a: single-shot label instability{which} (95% CI)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def variance_bars(diagnostics: pl.DataFrame, *, datasets: Sequence[str] | None = None) -> Figure:
    """Fig 2b: input-side (across rewrites) vs output-side (across decodes) variance of quality
    per dataset with 95% CIs; the input share of the total (metric ``input_share``) is written
    above each pair.

    ``diagnostics``: the ``diagnostics`` result (one row per (dataset, metric)).
    """
    _require(diagnostics, ("dataset", "metric", "value", "ci_low", "ci_high"), "diagnostics")
    frame = diagnostics.filter(pl.col("metric").is_in(VARIANCE_METRICS))
    _require(frame, ("metric",), "diagnostics (variance metrics)")
    ds = _datasets(frame, datasets)
    fig = Figure(figsize=(max(6.0, 2.0 * len(ds) + 2.5), 4.2), layout="constrained")
    ax = fig.subplots()
    _grouped_bars(ax, frame, ds, VARIANCE_METRICS, None)
    shares = {
        r["dataset"]: r["value"]
        for r in diagnostics.filter(pl.col("metric") == "input_share").rows(named=True)
    }
    tops = frame.group_by("dataset").agg(pl.max_horizontal("value", "ci_high").max().alias("top"))
    top = dict(zip(tops["dataset"], tops["top"], strict=True))
    for i, d in enumerate(ds):
        if shares.get(d) is not None and top.get(d) is not None:
            ax.annotate(
                f"input share {shares[d]:.2f}",
                (i, top[d]),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    ax.set_ylabel("variance of quality (mean over query–model pairs)")
    highest = max((v for v in top.values() if v is not None and math.isfinite(v)), default=0.0)
    if highest > 0:
        ax.set_ylim(0, highest * 1.2)  # room for the input-share labels under the title
    ax.set_title("Fig 2b: input- vs output-side variance (95% CI)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def single_shot_violins(
    distribution: pl.DataFrame, main: pl.DataFrame, *, datasets: Sequence[str] | None = None
) -> Figure:
    """Fig 2c: the distribution of test utility over the single-shot routers (one per draw) of
    each family, with the DARS router's utility marked and the best fixed model as a line.

    ``distribution``: the ``single_shot_distribution`` result (one row per (dataset, view,
    family, draw) with U). ``main``: the ``main`` result (rows with supervision ``dars`` give the
    markers, supervision ``best_fixed`` the line). Panels: rows = views, columns = datasets.
    """
    _require(distribution, ("dataset", "view", "family", "draw", "U"), "single_shot_distribution")
    _require(main, ("dataset", "view", "family", "supervision", "U"), "main")
    ds = _datasets(distribution, datasets)
    views = _views(distribution)
    families = order_families(distribution["family"].unique().to_list())
    colours = family_colours(families)
    fig, axes = _grid(len(views), len(ds), max(3.2, 0.55 * len(families) + 1.0), 3.0)
    for r, view in enumerate(views):
        for c, dataset in enumerate(ds):
            ax = axes[r, c]
            panel = distribution.filter((pl.col("dataset") == dataset) & (pl.col("view") == view))
            ref = main.filter((pl.col("dataset") == dataset) & (pl.col("view") == view))
            for i, fam in enumerate(families):
                u = panel.filter(pl.col("family") == fam)["U"].drop_nulls().to_numpy()
                if u.size == 0:
                    continue
                if u.size >= 2 and np.ptp(u) > 0:
                    parts = ax.violinplot(u, positions=[i], widths=0.8, showextrema=False)
                    for body in parts["bodies"]:
                        body.set_facecolor(colours[fam])
                        body.set_edgecolor("black")
                        body.set_linewidth(0.5)
                        body.set_alpha(0.55)
                ax.scatter([i], [u.mean()], marker="o", s=14, color="black", zorder=4)
                is_dars = (pl.col("family") == fam) & (pl.col("supervision") == "dars")
                dars = ref.filter(is_dars)["U"]
                if dars.len():
                    ax.scatter([i], [dars[0]], marker="D", s=36, color="crimson", zorder=5)
            best = ref.filter(pl.col("supervision") == "best_fixed")["U"]
            if best.len():
                ax.axhline(best[0], color="grey", linestyle="--", linewidth=1)
            ax.set_xticks(range(len(families)), families, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{dataset} — {VIEW_LABELS.get(view, view)}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if c == 0:
                ax.set_ylabel("test utility U")
    handles = [
        Patch(facecolor="lightgrey", edgecolor="black", label="single-shot routers (draws)"),
        Line2D([], [], marker="o", color="black", linestyle="", label="single-shot mean"),
        Line2D([], [], marker="D", color="crimson", linestyle="", label="DARS router"),
        Line2D([], [], color="grey", linestyle="--", label="best fixed model"),
    ]
    _legend(fig, handles)
    fig.suptitle("Fig 2c: test utility of single-shot routers vs the DARS router")
    return fig


def _family_legend(fig: Figure, families: Sequence[str], extra: Sequence[Artist] = ()) -> None:
    colours = family_colours(families)
    handles = [Line2D([], [], color=colours[f], marker="o", label=f) for f in families]
    _legend(fig, [*handles, *extra])


def sample_efficiency_curves(
    frame: pl.DataFrame, *, datasets: Sequence[str] | None = None
) -> Figure:
    """Fig 4a: test utility of DARS routers trained on k×m sub-protocols, per family.

    ``frame``: the ``sample_efficiency`` result (one row per (dataset, view, family, k, m) with
    n_obs = k·m and U). Protocols are placed in order of n_obs (then k) at equal spacing and
    labelled ``k×m``, so two protocols with the same n_obs stay distinct. A thick black line is
    the mean U over the families at each protocol, in a grey min–max band over them; the
    families' own lines are drawn faint. CIs are left out: with several families their bands
    hide the curves (the report states their typical width).
    """
    _require(
        frame,
        ("dataset", "view", "family", "k", "m", "n_obs", "U"),
        "sample_efficiency",
    )
    ds = _datasets(frame, datasets)
    views = _views(frame)
    families = order_families(frame["family"].unique().to_list())
    colours = family_colours(families)
    fig, axes = _grid(len(views), len(ds), 3.8, 3.0)
    for c, dataset in enumerate(ds):
        sub = frame.filter(pl.col("dataset") == dataset)
        protocols = sub.select("n_obs", "k", "m").unique().sort("n_obs", "k", "m").rows()
        pos = {(k, m): i for i, (_, k, m) in enumerate(protocols)}
        for r, view in enumerate(views):
            ax = axes[r, c]
            panel = sub.filter(pl.col("view") == view)
            for fam in families:
                rows = panel.filter(pl.col("family") == fam).sort("n_obs", "k", "m")
                if rows.height == 0:
                    continue
                x = [pos[(k, m)] for k, m in zip(rows["k"], rows["m"], strict=True)]
                ax.plot(
                    x, rows["U"].to_numpy(), marker="o", ms=3, color=colours[fam], lw=0.9, alpha=0.5
                )
            spread = (
                panel.group_by("n_obs", "k", "m")
                .agg(mean=pl.col("U").mean(), lo=pl.col("U").min(), hi=pl.col("U").max())
                .sort("n_obs", "k", "m")
            )
            if spread.height:
                x = [pos[(k, m)] for k, m in zip(spread["k"], spread["m"], strict=True)]
                ax.fill_between(x, spread["lo"], spread["hi"], color="black", alpha=0.08, lw=0)
                ax.plot(x, spread["mean"].to_numpy(), color="black", lw=2.2, marker="o", ms=4)
            ax.set_xticks(range(len(protocols)), [f"{k}×{m}" for _, k, m in protocols], fontsize=8)
            ax.set_title(f"{dataset} — {VIEW_LABELS.get(view, view)}", fontsize=10)
            ax.grid(alpha=0.3)
            if r == len(views) - 1:
                ax.set_xlabel("training protocol k rewrites × m decodes")
            if c == 0:
                ax.set_ylabel("test utility U")
    mean = Line2D([], [], color="black", lw=2.2, marker="o", label="mean over families")
    band = Patch(color="black", alpha=0.08, label="min–max over families")
    _family_legend(fig, families, extra=[mean, band])
    fig.suptitle("Fig 4a: sample efficiency of DARS supervision")
    return fig


#: Markers of the fixed models in Fig 4b (cycled when the pool is larger).
_FIXED_MARKERS = ("x", "+", "^", "v", "D", "*", "P", "s", "<", ">")


def pareto_frontiers(pareto: pl.DataFrame, dataset: str) -> Figure:
    """Fig 4b for one dataset: mean quality Q against mean normalised cost C as λ varies, for
    single-shot (mean over draws, dashed) and DARS (solid) routers of each family, with the
    pool's fixed models as grey markers (one marker per model, named in the legend).

    ``pareto``: the ``pareto`` result (rows (dataset, view, family, supervision, lam, model, Q, C);
    ``fixed`` rows carry the model name).
    One panel per (family, view), the two views of a family side by side, two families per
    row; all panels share their axes.
    """
    _require(
        pareto, ("dataset", "view", "family", "supervision", "lam", "model", "Q", "C"), "pareto"
    )
    frame = pareto.filter(pl.col("dataset") == dataset)
    _require(frame, ("dataset",), f"pareto rows of {dataset!r}")
    views = _views(frame)
    routed = frame.filter(pl.col("supervision") != "fixed")
    families = order_families(routed["family"].drop_nulls().unique().to_list())
    if not families:
        raise ValueError(f"pareto rows of {dataset!r}: no single_shot/dars rows to plot")
    colours = family_colours(families)
    panels = [(fam, view) for fam in families for view in views]
    ncols = len(views) * min(2, len(families))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _grid(nrows, ncols, 3.4, 2.9, share=True)
    fixed_by_view = {
        view: frame.filter((pl.col("view") == view) & (pl.col("supervision") == "fixed"))
        .unique(subset=["model"], keep="first", maintain_order=True)
        .sort("model")
        for view in views
    }
    # Fixed models are told apart by marker, named once in the legend: names written beside
    # the crosses overlapped, as cheap models sit close together at low cost.
    models = sorted({m for f in fixed_by_view.values() for m in f["model"].to_list()})
    fixed_markers = {m: _FIXED_MARKERS[i % len(_FIXED_MARKERS)] for i, m in enumerate(models)}
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for i, (fam, view) in enumerate(panels):
        ax = axes.flat[i]
        for supervision, style in (("single_shot", "--"), ("dars", "-")):
            rows = routed.filter(
                (pl.col("view") == view)
                & (pl.col("family") == fam)
                & (pl.col("supervision") == supervision)
            ).sort("lam")
            if rows.height:
                ax.plot(
                    rows["C"].to_numpy(),
                    rows["Q"].to_numpy(),
                    linestyle=style,
                    marker="o" if supervision == "dars" else "s",
                    ms=3,
                    lw=1.2,
                    color=colours[fam],
                )
        fixed = fixed_by_view[view]
        for m, cx, qy in zip(fixed["model"], fixed["C"], fixed["Q"], strict=True):
            ax.scatter([cx], [qy], marker=fixed_markers[m], color="dimgrey", s=26, zorder=4)
        ax.set_title(f"{fam} — {VIEW_LABELS.get(view, view)}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelbottom=True)  # sharex hides them on all but the last row
        ax.set_xlabel("mean normalised cost C", fontsize=8)
        if i % ncols == 0:
            ax.set_ylabel("mean quality Q")
    handles = [
        Line2D([], [], color="black", linestyle="--", marker="s", ms=3, label="single-shot (mean)"),
        Line2D([], [], color="black", linestyle="-", marker="o", ms=3, label="DARS"),
        *[
            Line2D([], [], color="dimgrey", linestyle="", marker=fixed_markers[m], label=m)
            for m in models
        ],
    ]
    _legend(fig, handles)
    fig.suptitle(f"Fig 4b: cost–quality frontiers as λ varies — {dataset}")
    return fig


def beta_curves(
    beta: pl.DataFrame, *, default_beta: float | None = None, datasets: Sequence[str] | None = None
) -> Figure:
    """Fig 4c: test utility of DARS routers trained with risk weight β, per family; the run's
    β (``default_beta``) is a dotted vertical line; CIs are left out as in Fig 4a.

    ``beta``: the ``beta`` result (one row per (dataset, view, family, beta) with U). Panels:
    rows = views, columns = datasets.
    """
    _require(beta, ("dataset", "view", "family", "beta", "U"), "beta")
    ds = _datasets(beta, datasets)
    views = _views(beta)
    families = order_families(beta["family"].unique().to_list())
    colours = family_colours(families)
    fig, axes = _grid(len(views), len(ds), 3.8, 3.0)
    for r, view in enumerate(views):
        for c, dataset in enumerate(ds):
            ax = axes[r, c]
            panel = beta.filter((pl.col("dataset") == dataset) & (pl.col("view") == view))
            for fam in families:
                rows = panel.filter(pl.col("family") == fam).sort("beta")
                if rows.height == 0:
                    continue
                x = rows["beta"].to_numpy()
                ax.plot(x, rows["U"].to_numpy(), marker="o", ms=3, lw=1.2, color=colours[fam])
            if default_beta is not None:
                ax.axvline(default_beta, color="black", linestyle=":", linewidth=1)
            ax.set_title(f"{dataset} — {VIEW_LABELS.get(view, view)}", fontsize=10)
            ax.grid(alpha=0.3)
            if r == len(views) - 1:
                ax.set_xlabel("risk weight β used for training labels")
            if c == 0:
                ax.set_ylabel("test utility U")
    extra = []
    if default_beta is not None:
        extra.append(
            Line2D([], [], color="black", linestyle=":", label=f"run's β = {default_beta:g}")
        )
    _family_legend(fig, families, extra)
    fig.suptitle("Fig 4c: sensitivity to the risk weight β")
    return fig


def png_bytes(fig: Figure, *, dpi: int = _DPI) -> bytes:
    """``fig`` as PNG bytes; the same figure gives the same bytes (no software or time
    metadata is written)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
