"""Label recovery: how often does a supervision scheme name the truly best model?

Needs a ground-truth frame, one row per (dataset, query_id, model), with ``p_true`` (expected
quality) and ``c_true`` (expected normalised cost, on the scale of ``c_norm``: the synthetic
generator in :mod:`dars.supervision.synthetic` provides one) and, optionally, ``sigma_true``.
The true utility is ``u* = p_true - lam * c_true - beta_true * sigma_true`` with
``beta_true = 0`` by default: the target is the expected utility, and risk is treated as a
property of finite supervision rather than of the truth. A label is correct when its model's
``u*`` equals the best ``u*`` of the query to ``TIE_DECIMALS`` decimals (any tied-best model
counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from dars.supervision.ablations import ABLATIONS, get_ablation, subgrid_dars, subgrid_ranks
from dars.supervision.core import (
    CELL_KEY,
    QUERY_KEY,
    Missing,
    ObservationsLike,
    _check_weights,
    _collect,
    _format_key,
    _require_columns,
    check_finite,
    check_models,
    dataset_seed,
    prepare_once,
    to_arrays,
)
from dars.supervision.diagnostics import _check_ci, bootstrap_ratio
from dars.supervision.labels import TIE_DECIMALS, hard_labels
from dars.supervision.single_shot import single_shot
from dars.utility import DEFAULT_BETA, DEFAULT_LAM, utility_expr

#: Columns of :func:`label_recovery` frames (``recovery_table`` adds supervision, k, m).
RECOVERY_COLUMNS = (
    "dataset",
    "recovery",
    "ci_low",
    "ci_high",
    "regret",
    "n_queries",
    "n_labels",
)


def truth_on_cost_scale(
    truth: pl.DataFrame, query_ids: Iterable[str], bounds: pl.DataFrame
) -> pl.DataFrame:
    """A simulated pool's stored truth on the scale of the observations (pure).

    ``truth``: one row per (dataset, query_id, model) with ``p_true`` and ``expected_cost_usd``
    (the expected USD cost of one decode; see :mod:`dars.storage.truth`). ``query_ids``: the
    queries to keep (those being supervised). ``bounds``: the dataset's observed cost range
    (:func:`~dars.supervision.core.cost_bounds`: ``dataset, cost_min, cost_max``).

    Returns one row per (dataset, query_id, model) of ``query_ids`` with ``p_true`` and
    ``c_true`` = the expected cost min-max normalised with ``bounds`` (0 when the range is
    empty), sorted by the cell key. A kept query without truth for some model raises: the
    store and the truth were written with different configs.
    """
    _require_columns(truth.columns, [*CELL_KEY, "p_true", "expected_cost_usd"], "truth")
    wanted = sorted(set(query_ids))
    frame = truth.filter(pl.col("query_id").is_in(wanted))
    have = frame.group_by("query_id").agg(pl.col("model").n_unique().alias("n"))
    n_models = truth["model"].n_unique()
    lacking = sorted(set(wanted) - set(have.filter(pl.col("n") == n_models)["query_id"]))
    if lacking:
        raise ValueError(
            f"the stored truth has no complete row set for {len(lacking)} supervised train "
            f"quer(ies), e.g. {lacking[0]!r}; was the store written with another config "
            "(benchmark options, n_train, seed)? Rerun `dars collect` to rewrite the truth"
        )
    datasets = frame["dataset"].unique().to_list()
    if len(datasets) != 1:
        raise ValueError(f"truth must hold one dataset, got {sorted(datasets)}")
    row = bounds.filter(pl.col("dataset") == datasets[0])
    if row.height != 1:
        raise ValueError(f"cost bounds have no row for dataset {datasets[0]!r}")
    lo, hi = row["cost_min"].item(), row["cost_max"].item()
    span = hi - lo
    c_true = ((pl.col("expected_cost_usd") - lo) / span) if span > 0 else pl.lit(0.0)
    return frame.with_columns(c_true=c_true).select(*CELL_KEY, "p_true", "c_true").sort(CELL_KEY)


def true_utility(
    truth: pl.DataFrame | pl.LazyFrame, *, lam: float = DEFAULT_LAM, beta_true: float = 0.0
) -> pl.DataFrame:
    """Validated ground truth with ``u_true`` added.

    One row per (dataset, query_id, model): ``p_true``, ``c_true`` (float64), ``sigma_true``
    when present, and ``u_true = p_true - lam * c_true - beta_true * sigma_true``
    (``sigma_true`` is required only when ``beta_true > 0``).
    """
    _check_weights(lam=lam, beta_true=beta_true)
    frame = _collect(truth, "truth")
    needed = [*CELL_KEY, "p_true", "c_true", *(["sigma_true"] if beta_true > 0 else [])]
    _require_columns(frame.columns, needed, "truth")
    values = [c for c in ("p_true", "c_true", "sigma_true") if c in frame.columns]
    frame = frame.select(
        *(pl.col(c).cast(pl.String) for c in CELL_KEY),
        *(pl.col(c).cast(pl.Float64) for c in values),
    )
    check_finite(frame, values, CELL_KEY, "truth")
    dup = frame.filter(pl.struct(CELL_KEY).is_duplicated())
    if dup.height:
        raise ValueError(
            f"truth has duplicate rows, e.g. {_format_key(dup.row(0, named=True), CELL_KEY)}"
        )
    sigma = "sigma_true" if beta_true > 0 else None
    u_true = utility_expr("p_true", "c_true", sigma, lam=lam, beta=beta_true)
    return frame.with_columns(u_true=u_true).sort(CELL_KEY)


def label_recovery(
    labels: pl.DataFrame | pl.LazyFrame,
    truth: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    lam: float = DEFAULT_LAM,
    beta_true: float = 0.0,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pl.DataFrame:
    """Share of queries whose label is a truly best model, per dataset.

    ``labels``: one row per (dataset, query_id, index…) with ``label`` (model name): hard labels
    of an aggregate (one row per query) or single-shot labels (one row per (draw, query)).
    A query's recovery is the share of its rows that are correct (so single-shot recovery is the
    mean over draws); the dataset's ``recovery`` is the mean over its queries, with a bootstrap
    CI over queries (:func:`~dars.supervision.diagnostics.bootstrap_ratio`). ``regret`` is the
    mean over queries of ``max u* - u*(label)``. ``n_queries`` / ``n_labels`` count queries /
    label rows. Output columns: :data:`RECOVERY_COLUMNS`.
    """
    names = check_models(models)
    _check_ci(ci, n_boot)
    frame = _collect(labels, "labels")
    _require_columns(frame.columns, (*QUERY_KEY, "label"), "labels")
    unknown = sorted(set(frame["label"].unique().to_list()) - set(names))
    if unknown:
        raise ValueError(f"labels name model(s) {unknown} that are not in the pool {names}")
    truth_arr = to_arrays(
        true_utility(truth, lam=lam, beta_true=beta_true), names, ["u_true"], missing="error"
    )
    u_true = truth_arr["u_true"]
    best = u_true.max(axis=1)
    model_index = pl.DataFrame(
        {"label": names, "_col": list(range(len(names)))},
        schema={"label": pl.String, "_col": pl.Int64},
    )
    joined = (
        frame.select(*QUERY_KEY, "label")
        .join(truth_arr.keys.with_row_index("_row"), on=list(QUERY_KEY), how="left")
        .join(model_index, on="label", how="left")
    )
    lost = joined.filter(pl.col("_row").is_null())
    if lost.height:
        raise ValueError(f"truth has no row for {_format_key(lost.row(0, named=True), QUERY_KEY)}")
    rows = joined["_row"].to_numpy().astype(np.int64)
    cols = joined["_col"].to_numpy()
    chosen = u_true[rows, cols]
    correct = np.round(chosen, TIE_DECIMALS) == np.round(best[rows], TIE_DECIMALS)
    per_query = (
        joined.select(*QUERY_KEY)
        .with_columns(
            correct=pl.Series(correct, dtype=pl.Float64),
            regret=pl.Series(best[rows] - chosen, dtype=pl.Float64),
        )
        .group_by(QUERY_KEY)
        .agg(correct=pl.col("correct").mean(), regret=pl.col("regret").mean(), n=pl.len())
        .sort(QUERY_KEY)
    )
    out = []
    for (dataset,), part in per_query.group_by("dataset", maintain_order=True):
        value, lo, hi = bootstrap_ratio(
            part["correct"].to_numpy(),
            np.ones(part.height),
            n_boot=n_boot,
            seed=dataset_seed(seed, dataset),
            ci=ci,
        )
        out.append(
            (
                dataset,
                value,
                lo,
                hi,
                float(part["regret"].mean()),
                part.height,
                int(part["n"].sum()),
            )
        )
    schema = dict(
        zip(
            RECOVERY_COLUMNS,
            (pl.String, pl.Float64, pl.Float64, pl.Float64, pl.Float64, pl.Int64, pl.Int64),
            strict=True,
        )
    )
    return pl.DataFrame(out, schema=schema, orient="row")


def recovery_table(
    obs: ObservationsLike,
    truth: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    beta_true: float = 0.0,
    draws: int = 100,
    seed: int = 0,
    ablations: Iterable[str] = tuple(ABLATIONS),
    protocols: Iterable[tuple[int, int]] = (),
    n_boot: int = 1000,
    ci: float = 0.95,
    missing: Missing = "error",
) -> pl.DataFrame:
    """Label recovery of single-shot vs every Table-2 ablation and k×m protocol, as one tidy frame.

    One row per (dataset, supervision): ``supervision`` is ``"single_shot"`` (``draws`` seeded
    draws, recovery averaged over draws), each name in ``ablations`` (see
    :data:`~dars.supervision.ablations.ABLATIONS`) and ``"dars_k{k}_m{m}"`` for each (k, m) in
    ``protocols`` (full DARS on a seeded sub-grid,
    :func:`~dars.supervision.ablations.subgrid_dars`).
    Columns: ``dataset, supervision, k, m`` (int32, null except for protocols), then
    ``recovery, ci_low, ci_high, regret, n_queries, n_labels`` as in :func:`label_recovery`.
    """
    names = check_models(models)
    obs = prepare_once(obs)
    kw = {"lam": lam, "beta_true": beta_true, "n_boot": n_boot, "seed": seed, "ci": ci}
    truth = true_utility(truth, lam=lam, beta_true=beta_true)
    parts: list[tuple[str, int | None, int | None, pl.DataFrame]] = []
    shots = single_shot(obs, names, draws=draws, seed=seed, lam=lam, missing=missing)
    parts.append(("single_shot", None, None, shots.labels))
    for name in ablations:
        agg = get_ablation(name)(obs, lam=lam, beta=beta)
        parts.append((name, None, None, hard_labels(agg, names, missing=missing)))
    protocols = list(protocols)
    ranks = subgrid_ranks(obs.frame, seed) if protocols else None
    for k, m in protocols:
        agg = subgrid_dars(obs, k=k, m=m, seed=seed, lam=lam, beta=beta, ranks=ranks)
        parts.append((f"dars_k{k}_m{m}", k, m, hard_labels(agg, names, missing=missing)))
    frames = [
        label_recovery(labels, truth, names, **kw).select(
            "dataset",
            pl.lit(sup, pl.String).alias("supervision"),
            pl.lit(k, pl.Int32).alias("k"),
            pl.lit(m, pl.Int32).alias("m"),
            *RECOVERY_COLUMNS[1:],
        )
        for sup, k, m, labels in parts
    ]
    return pl.concat(frames).sort("dataset", maintain_order=True)
