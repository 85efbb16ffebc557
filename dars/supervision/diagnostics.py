"""Diagnostics of paper §3.3 / Figure 2: how unstable are single sampled outcomes?

Every metric is a ratio of sums over queries, ``value = Σ_q num_q / Σ_q den_q``, reported per
dataset with a percentile bootstrap CI that resamples queries with replacement (vectorised:
one (n_boot × n_queries) index matrix, processed in blocks). Each dataset's resampling stream is
seeded from ``(seed, crc32(dataset))``, so a dataset's numbers do not depend on which other
datasets are in the frame.

Metric frames have one row per (dataset, metric) and the columns :data:`METRIC_COLUMNS`:
``dataset``, ``metric``, ``value``, ``ci_low``, ``ci_high`` (float64; NaN when the denominator is
0), ``n_queries`` (queries contributing), ``n_units`` (int64, the units the share is over:
(query, model) cells, queries or (query, index) rows, as each metric says).

Two metrics compare single sampled outcomes across an *observation index*, and there are two
:data:`DEFINITIONS` of it (both are computed; one is the default the summary shows):

``paper`` (the default; the paper's Appendix C.5)
    the index is the slot (rewrite_id, decode_id) shared by all models: the single-shot outcome
    j of every model is its observation at slot j (u = q − λc per slot,
    :func:`~dars.supervision.single_shot.slot_labels`); the distribution-aware label is
    argmax μ − λc̄, without a risk term.
    Only slots where every pool model has an ok observation count: a slot where some model
    failed is left out, a query with fewer than two complete slots has no winner flip, and one
    with none has no disagreement either (``n_queries``/``n_units`` say how many remain).
``draws``
    the index is one of S seeded single-shot draws, each (query, model) cell drawing one of its
    observations independently (the single-shot training labels,
    :func:`~dars.supervision.single_shot.single_shot`); the DA label is the DARS hard label
    argmax μ − λc̄ − βσ.

:func:`diagnostics` computes the Figure-2 metrics under one definition; :func:`diagnostics_table`
computes both, in the table the supervise stage writes (:data:`DIAGNOSTICS_SCHEMA`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import polars as pl

from dars.supervision.ablations import full_dars
from dars.supervision.core import (
    CELL_KEY,
    QUERY_KEY,
    Missing,
    ObservationsLike,
    _collect,
    _prepared,
    _require_columns,
    dataset_seed,
    prepare_once,
    string_keys,
    with_cell_ids,
)
from dars.supervision.labels import hard_labels
from dars.supervision.single_shot import single_shot, slot_labels
from dars.utility import DEFAULT_BETA, DEFAULT_LAM

METRIC_COLUMNS = ("dataset", "metric", "value", "ci_low", "ci_high", "n_queries", "n_units")
#: Polars dtypes of :data:`METRIC_COLUMNS`.
METRIC_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "n_queries": pl.Int64(),
    "n_units": pl.Int64(),
}
_BLOCK_ELEMENTS = 2_000_000  # bound on one bootstrap block's index matrix (int64: 16 MB)

#: Figure-2 metrics in report order; the single-shot ones depend on the definition.
METRICS = (
    "outcome_instability",
    "winner_flip_rate",
    "single_vs_da_disagreement",
    "input_variance",
    "output_variance",
    "input_share",
)
SINGLE_SHOT_METRICS = ("winner_flip_rate", "single_vs_da_disagreement")


class Definition(NamedTuple):
    """One definition of the single-shot diagnostics (see the module docstring).

    ``index``: what a single-shot outcome is indexed by — ``"slots"`` (the (rewrite_id,
    decode_id) shared by all models) or ``"draws"`` (S seeded independent draws per cell);
    ``risk``: whether the distribution-aware label carries the risk term −βσ; ``text``: the
    definition in one sentence, as the report prints it.
    """

    name: str
    index: Literal["slots", "draws"]
    risk: bool
    text: str


#: The definitions of winner flip and single-vs-DA disagreement, default first.
DEFINITIONS: dict[str, Definition] = {
    "paper": Definition(
        "paper",
        "slots",
        False,
        "as in the paper (Appendix C.5), observation index j is a slot (rewrite k, decode m) "
        "shared by all models, a slot's single-shot label is argmax q − λc over the models' "
        "observations at that slot, and the distribution-aware label is argmax μ − λc̄ (no risk "
        "term); slots where some model failed are left out.",
    ),
    "draws": Definition(
        "draws",
        "draws",
        True,
        "observation index j is one of S seeded single-shot draws in which every (query, model) "
        "independently draws one of its observations (the single-shot training labels), a "
        "draw's label is argmax q − λc, and the distribution-aware label is the DARS label "
        "argmax μ − λc̄ − βσ.",
    ),
}
DEFAULT_DEFINITION = "paper"

#: Columns of :func:`diagnostics_table` (the supervise stage's ``diagnostics`` table).
DIAGNOSTICS_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "metric": pl.String(),
    "definition": pl.String(),
    "is_default": pl.Boolean(),
    "value": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "n_queries": pl.Int64(),
    "n_units": pl.Int64(),
}


def check_definition(definition: str) -> Definition:
    """The :class:`Definition` named ``definition``; ValueError listing the valid names."""
    if definition not in DEFINITIONS:
        raise ValueError(
            f"unknown diagnostics definition {definition!r}; valid: {', '.join(DEFINITIONS)}"
        )
    return DEFINITIONS[definition]


def _check_ci(ci: float, n_boot: int) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")


def bootstrap_ratio(
    num: np.ndarray,
    den: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int | Sequence[int] = 0,
    ci: float = 0.95,
) -> tuple[float, float, float]:
    """``(Σnum/Σden, ci_low, ci_high)`` with a percentile bootstrap over the units (queries).

    ``num`` and ``den`` hold one value per query. Resamples whose denominator is 0 are left out
    of the percentiles; all values are NaN when the full denominator is 0.
    """
    _check_ci(ci, n_boot)
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    n = num.size
    if n == 0 or den.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    value = float(num.sum() / den.sum())
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    stats = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        d = den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats[start:stop] = np.where(d > 0, num[idx].sum(axis=1) / d, np.nan)
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return value, float("nan"), float("nan")
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return value, float(lo), float(hi)


def summarise_ratio(
    per_query: pl.DataFrame,
    metric: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pl.DataFrame:
    """Metric rows from a per-query frame (dataset, query_id, num, den, units).

    One output row per dataset (see :data:`METRIC_COLUMNS`); ``n_units`` is Σ units.
    """
    _check_ci(ci, n_boot)
    rows = []
    for (dataset,), part in per_query.sort(QUERY_KEY).group_by("dataset", maintain_order=True):
        value, lo, hi = bootstrap_ratio(
            part["num"].to_numpy(),
            part["den"].to_numpy(),
            n_boot=n_boot,
            seed=dataset_seed(seed, dataset),
            ci=ci,
        )
        rows.append(
            {
                "dataset": dataset,
                "metric": metric,
                "value": value,
                "ci_low": lo,
                "ci_high": hi,
                "n_queries": part.height,
                "n_units": int(part["units"].sum()),
            }
        )
    return pl.DataFrame(rows, schema=METRIC_SCHEMA, orient="row")


def outcome_instability(
    obs: ObservationsLike,
    *,
    tol: float = 1e-9,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pl.DataFrame:
    """Share of (query, model) cells whose score varies across their observations.

    A cell is unstable when ``max(score) - min(score) > tol`` over its ok observations. Cells with
    a single observation cannot vary and are left out. Units: cells (metric
    ``outcome_instability``).
    """
    prep = with_cell_ids(_prepared(obs))
    cells = (
        prep.group_by("_cell", maintain_order=True)
        .agg(
            pl.col(QUERY_KEY).first(),
            n=pl.len(),
            spread=pl.col("score").max() - pl.col("score").min(),
        )
        .filter(pl.col("n") >= 2)
    )
    per_query = cells.group_by(QUERY_KEY).agg(
        num=(pl.col("spread") > tol).sum().cast(pl.Float64),
        den=pl.len().cast(pl.Float64),
        units=pl.len(),
    )
    return summarise_ratio(per_query, "outcome_instability", n_boot=n_boot, seed=seed, ci=ci)


def winner_flip_rate(
    labels: pl.DataFrame | pl.LazyFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pl.DataFrame:
    """Share of queries whose single-shot winner is not the same at every observation index.

    ``labels`` has one row per (dataset, query_id, index…) with a ``label`` column: the
    ``labels`` of :func:`~dars.supervision.single_shot.single_shot` (index = draw) or
    :func:`~dars.supervision.single_shot.slot_labels` (index = (rewrite_id, decode_id)). A query
    flips when its rows carry more than one distinct label; queries with a single row are left
    out. Units: queries (metric ``winner_flip_rate``).
    """
    frame = _collect(labels, "labels")
    _require_columns(frame.columns, (*QUERY_KEY, "label"), "labels")
    per_query = (
        frame.group_by(QUERY_KEY)
        .agg(n=pl.len(), distinct=pl.col("label").n_unique())
        .filter(pl.col("n") >= 2)
        .select(
            *QUERY_KEY,
            num=(pl.col("distinct") > 1).cast(pl.Float64),
            den=pl.lit(1.0),
            units=pl.lit(1),
        )
    )
    return summarise_ratio(per_query, "winner_flip_rate", n_boot=n_boot, seed=seed, ci=ci)


def single_vs_da_disagreement(
    single: pl.DataFrame | pl.LazyFrame,
    dars: pl.DataFrame | pl.LazyFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pl.DataFrame:
    """Share of (query, observation index) rows whose single-shot label differs from DARS's.

    ``single``: single-shot labels (one row per (dataset, query_id, index…), column ``label``);
    ``dars``: hard labels from an aggregate (one row per (dataset, query_id)). Every query of
    ``single`` must have a DARS label. Units: (query, index) rows (metric
    ``single_vs_da_disagreement``).
    """
    single = _collect(single, "single")
    dars = _collect(dars, "dars")
    _require_columns(single.columns, (*QUERY_KEY, "label"), "single")
    _require_columns(dars.columns, (*QUERY_KEY, "label"), "dars")
    ref = dars.select(*QUERY_KEY, dars_label=pl.col("label"))
    if ref.select(pl.struct(QUERY_KEY).is_duplicated().any()).item():
        raise ValueError("dars labels must have one row per (dataset, query_id)")
    joined = single.join(ref, on=list(QUERY_KEY), how="left")
    lost = joined.filter(pl.col("dars_label").is_null())
    if lost.height:
        row = lost.row(0, named=True)
        raise ValueError(
            f"no DARS label for dataset={row['dataset']!r}, query_id={row['query_id']!r}"
        )
    per_query = joined.group_by(QUERY_KEY).agg(
        num=(pl.col("label") != pl.col("dars_label")).sum().cast(pl.Float64),
        den=pl.len().cast(pl.Float64),
        units=pl.len(),
    )
    return summarise_ratio(per_query, "single_vs_da_disagreement", n_boot=n_boot, seed=seed, ci=ci)


def variance_components(obs: ObservationsLike) -> pl.DataFrame:
    """Law-of-total-variance split of each (query, model) cell's scores.

    One row per (dataset, query_id, model): ``n_obs``, ``input_var`` = variance of the
    per-rewrite mean scores weighted by their observation counts, ``output_var`` = the
    count-weighted mean of the within-rewrite variances, ``total_var`` = variance of all the
    cell's scores. Population variances (ddof=0) are used so that
    ``total_var = input_var + output_var`` holds exactly (up to rounding).
    """
    # Sorted rows grouped in order on integer ids (see with_cell_ids): groups come out sorted.
    prep = with_cell_ids(_prepared(obs))
    per_rewrite = prep.group_by("_cr", maintain_order=True).agg(
        pl.col("_cell", *CELL_KEY).first(),
        n_r=pl.len(),
        m_r=pl.col("score").mean(),
        v_r=pl.col("score").var(ddof=0),
    )
    n = pl.col("n_r").sum()
    mean = (pl.col("n_r") * pl.col("m_r")).sum() / n
    cells = per_rewrite.group_by("_cell", maintain_order=True).agg(
        pl.col(CELL_KEY).first(),
        n_obs=n.cast(pl.Int64),
        input_var=(pl.col("n_r") * (pl.col("m_r") - mean) ** 2).sum() / n,
        output_var=(pl.col("n_r") * pl.col("v_r")).sum() / n,
    )
    total = prep.group_by("_cell", maintain_order=True).agg(total_var=pl.col("score").var(ddof=0))
    if not cells["_cell"].equals(total["_cell"]):
        raise AssertionError("variance_components: cells out of step")
    return string_keys(
        cells.with_columns(total_var=total["total_var"]).select(
            *CELL_KEY, "n_obs", "input_var", "output_var", "total_var"
        )
    )


def variance_split(
    obs: ObservationsLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pl.DataFrame:
    """Input-side vs output-side variance per dataset (three metrics, units = cells).

    From :func:`variance_components`: ``input_variance`` = mean over (query, model) cells of
    ``input_var`` (how much the rewrite moves the mean score), ``output_variance`` = mean of
    ``output_var`` (decoding noise for a fixed input), ``input_share`` = Σ input_var /
    Σ (input_var + output_var) (NaN when every cell is constant).
    """
    comp = variance_components(obs)
    per_query = comp.group_by(QUERY_KEY).agg(
        inp=pl.col("input_var").sum(),
        out=pl.col("output_var").sum(),
        cells=pl.len().cast(pl.Float64),
        units=pl.len(),
    )
    parts = [
        summarise_ratio(
            per_query.select(*QUERY_KEY, num=num, den=den, units="units"),
            metric,
            n_boot=n_boot,
            seed=seed,
            ci=ci,
        )
        for metric, num, den in (
            ("input_variance", pl.col("inp"), pl.col("cells")),
            ("output_variance", pl.col("out"), pl.col("cells")),
            ("input_share", pl.col("inp"), pl.col("inp") + pl.col("out")),
        )
    ]
    return pl.concat(parts).sort("dataset", maintain_order=True)


def single_shot_diagnostics(
    obs: ObservationsLike,
    models: Sequence[str],
    definition: str = DEFAULT_DEFINITION,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    draws: int = 100,
    seed: int = 0,
    n_boot: int = 1000,
    ci: float = 0.95,
    missing: Missing = "error",
) -> pl.DataFrame:
    """``winner_flip_rate`` and ``single_vs_da_disagreement`` under one definition (metric
    frame, see :data:`METRIC_COLUMNS`; rows per dataset in that order).

    ``definition`` names one of :data:`DEFINITIONS`: ``"paper"`` labels every complete slot
    (:func:`~dars.supervision.single_shot.slot_labels`) and compares with the hard label of
    :func:`~dars.supervision.ablations.full_dars` at β = 0; ``"draws"`` labels ``draws`` seeded
    single-shot draws (:func:`~dars.supervision.single_shot.single_shot`) and compares with the
    full DARS label at ``beta``.
    """
    spec = check_definition(definition)
    obs = prepare_once(obs)
    if spec.index == "slots":
        single = slot_labels(obs, models, lam=lam)
    else:
        single = single_shot(obs, models, draws=draws, seed=seed, lam=lam, missing=missing).labels
    da = hard_labels(
        full_dars(obs, lam=lam, beta=beta if spec.risk else 0.0), models, missing=missing
    )
    boot = {"n_boot": n_boot, "seed": seed, "ci": ci}
    return pl.concat(
        [winner_flip_rate(single, **boot), single_vs_da_disagreement(single, da, **boot)]
    )


def draws_metrics(
    query_keys: pl.DataFrame,
    n_draws: int,
    flipped: np.ndarray,
    disagreements: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pl.DataFrame:
    """The ``draws`` rows of :func:`single_shot_diagnostics` from per-query counts.

    ``query_keys``: one row per query (dataset, query_id); ``flipped[i]``: whether query i's
    single-shot label differs between some of the ``n_draws`` draws; ``disagreements[i]``: in
    how many draws it differs from the DARS label. Same values as
    ``single_shot_diagnostics(obs, models, "draws", draws=n_draws, ...)`` computed from those
    labels, without holding the (draws × queries) label frame.
    """
    boot = {"n_boot": n_boot, "seed": seed, "ci": ci}
    flips = query_keys.select(
        *QUERY_KEY,
        num=pl.Series(np.asarray(flipped, dtype=np.float64)),
        den=pl.lit(1.0),
        units=pl.lit(1, pl.Int32),
    )
    if n_draws < 2:  # a query with one draw cannot flip: it is left out
        flips = flips.clear()
    disagree = query_keys.select(
        *QUERY_KEY,
        num=pl.Series(np.asarray(disagreements, dtype=np.float64)),
        den=pl.lit(float(n_draws)),
        units=pl.lit(n_draws, pl.UInt32),
    )
    return pl.concat(
        [
            summarise_ratio(flips, "winner_flip_rate", **boot),
            summarise_ratio(disagree, "single_vs_da_disagreement", **boot),
        ]
    )


def _in_metric_order(frame: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    order = {name: i for i, name in enumerate(METRICS)}
    return (
        frame.with_columns(_o=pl.col("metric").replace_strict(order, return_dtype=pl.Int32))
        .sort("dataset", "_o", *by)
        .drop("_o")
    )


def diagnostics(
    obs: ObservationsLike,
    models: Sequence[str],
    *,
    definition: str = DEFAULT_DEFINITION,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    draws: int = 100,
    seed: int = 0,
    tol: float = 1e-9,
    n_boot: int = 1000,
    ci: float = 0.95,
    missing: Missing = "error",
) -> pl.DataFrame:
    """All Figure-2 diagnostics for an observation frame under one definition, as one metric
    frame.

    Rows per dataset, in :data:`METRICS` order: ``outcome_instability``, ``winner_flip_rate``,
    ``single_vs_da_disagreement``, ``input_variance``, ``output_variance``, ``input_share``
    (columns :data:`METRIC_COLUMNS`). The two single-shot metrics follow ``definition`` (see
    :func:`single_shot_diagnostics`); the others use every observation.
    """
    # One computation of the metrics: the table's rows for this definition, without the rows
    # the table keeps for metrics that have no unit.
    table = diagnostics_table(
        obs, models, default=definition, lam=lam, beta=beta, draws=draws, seed=seed, tol=tol,
        n_boot=n_boot, ci=ci, missing=missing,
    )  # fmt: skip
    return table.filter(pl.col("is_default") & (pl.col("n_units") > 0)).select(METRIC_COLUMNS)


def diagnostics_table(
    obs: ObservationsLike,
    models: Sequence[str],
    *,
    default: str = DEFAULT_DEFINITION,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    draws: int = 100,
    seed: int = 0,
    tol: float = 1e-9,
    n_boot: int = 1000,
    ci: float = 0.95,
    missing: Missing = "error",
    computed: dict[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """The Figure-2 diagnostics under every definition (the supervise stage's table).

    Columns :data:`DIAGNOSTICS_SCHEMA`. Per dataset: one row per metric that does not depend
    on the definition (``definition`` null) and one row per (metric, definition) for
    :data:`SINGLE_SHOT_METRICS` × :data:`DEFINITIONS`. ``is_default`` marks the rows of
    ``default``'s set of metrics (the definition-free rows included): filtering on it gives
    the rows of :func:`diagnostics` with ``definition=default``. Unlike there, a metric without
    any unit (e.g. no slot where every model has an ok observation) keeps its row, with NaN
    values and zero counts, so both definitions can always be shown side by side. Sorted by
    dataset, then metric in :data:`METRICS` order, the default definition first.

    ``computed``: definition name → the rows :func:`single_shot_diagnostics` would return for
    it with these arguments, already computed (the stage derives the ``draws`` rows from the
    single-shot draws it streams to disk, :func:`draws_metrics`); those are not recomputed.
    """
    computed_rows = dict(computed or {})
    check_definition(default)
    obs = prepare_once(obs)
    boot = {"n_boot": n_boot, "seed": seed, "ci": ci}
    names = [default, *(d for d in DEFINITIONS if d != default)]
    # _d: position of the row's definition in `names`, -1 for the definition-free metrics.
    parts = [
        outcome_instability(obs, tol=tol, **boot).with_columns(_d=pl.lit(-1, pl.Int32)),
        variance_split(obs, **boot).with_columns(_d=pl.lit(-1, pl.Int32)),
    ]
    for i, name in enumerate(names):
        if name in computed_rows:
            rows = computed_rows[name]
        else:
            rows = single_shot_diagnostics(
                obs, models, name, lam=lam, beta=beta, draws=draws, missing=missing, **boot
            )
        parts.append(rows.with_columns(_d=pl.lit(i, pl.Int32)))
    computed = pl.concat(parts)
    wanted = [(m, -1) for m in METRICS if m not in SINGLE_SHOT_METRICS] + [
        (m, i) for m in SINGLE_SHOT_METRICS for i in range(len(names))
    ]
    skeleton = computed.select(pl.col("dataset").unique()).join(
        pl.DataFrame(wanted, schema={"metric": pl.String, "_d": pl.Int32}, orient="row"),
        how="cross",
    )
    nan = float("nan")
    table = skeleton.join(computed, on=["dataset", "metric", "_d"], how="left").with_columns(
        pl.col("value", "ci_low", "ci_high").fill_null(nan),
        pl.col("n_queries", "n_units").fill_null(0),
        definition=pl.col("_d").replace_strict(
            dict(enumerate(names)), default=None, return_dtype=pl.String
        ),
        is_default=pl.col("_d") <= 0,
    )
    return _in_metric_order(table, by=["_d"]).select(
        [pl.col(c).cast(t) for c, t in DIAGNOSTICS_SCHEMA.items()]
    )
