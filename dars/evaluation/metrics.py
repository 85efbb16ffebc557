"""Test-time utility of routers and reference policies (pure polars/numpy: no paths, no Prefect).

The test split is observed in two views (see :mod:`dars.storage.importer`):

* ``test_rewrite``: every (query, model) answered on the rewrites (``rewrite_id`` 0..K-1, one
  decode each) — how a policy fares when the same question is phrased differently;
* ``test_decode``: the original query (``rewrite_id = -1``) decoded several times
  (``decode_id`` 0..M-1) — how it fares under sampling noise.

Each view is scored separately. Per (query, model) the view's utility is the paper's per-observation
utility ``u = q - lam * c_norm`` averaged over that view's ok observations (no spread term: the
spread is a training-time risk penalty, the test measures expected utility). Cost is min-max
normalised per dataset with :func:`dars.supervision.core.prepare_observations`; pass
``cost_bounds`` computed over *all* of a dataset's observations (train included) so train and test
share one scale.

Frames built here:

* :func:`all_views_cost_bounds` — one cost scale per dataset over train and test;
* :func:`view_utilities` — one row per (dataset, view, query_id, model);
* :func:`routed_cells` — one row per (dataset, view, draw, query_id): the routed model's u;
* :func:`router_utilities` — one row per (dataset, view, draw[, extra route keys]) for a router;
* :func:`reference_rows` — one row per (dataset, view): best fixed model, oracle, random routing;
* :func:`summarise_single_shot` — mean ± std over single-shot draws;
* :func:`draw_scores` — per-draw U, Q, C with a bootstrap CI, from routed cells;
* :func:`bootstrap_ci` — percentile bootstrap over queries;
* :func:`score_routes` — one trained router's test routes → U, Q, C per view (the row every
  experiment that scores stored routes reports).

:data:`FAMILY_ORDER` / :func:`order_families` fix the order router families appear in, in every
table and figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from dars.supervision.core import cost_bounds as _cost_bounds
from dars.supervision.core import prepare_observations
from dars.utility import DEFAULT_LAM, utility_expr

#: The paper's order of router families (Table 1); families not listed follow alphabetically.
FAMILY_ORDER = ("mlp", "knn", "embedllm", "avengers_pro", "graph_router", "mirt", "rm_softmax")

VIEWS = ("test_rewrite", "test_decode")
#: Short view names of table columns: ``<dataset>_rew`` / ``<dataset>_dec`` (the paper's).
VIEW_SHORT = {"test_rewrite": "rew", "test_decode": "dec"}


def order_families(families: Iterable[str]) -> list[str]:
    """Distinct ``families`` in the paper's order, unknown ones after it alphabetically."""
    names = set(families)
    known = [f for f in FAMILY_ORDER if f in names]
    return known + sorted(names - set(FAMILY_ORDER))


def view_columns(datasets: Sequence[str]) -> list[str]:
    """Column names of a dataset × view table (Tables 1 and 2): ``<dataset>_rew`` then
    ``<dataset>_dec`` for each dataset in the given order."""
    return [f"{d}_{VIEW_SHORT[v]}" for d in datasets for v in VIEWS]


#: Columns of :func:`view_utilities`, in order.
VIEW_UTIL_COLUMNS = ("dataset", "view", "query_id", "model", "n_obs", "q", "c", "u")
#: Columns of :func:`router_utilities` besides the keys.
ROUTER_UTIL_VALUES = ("n_queries", "U", "Q", "C")

_VIEW_CELL = ("dataset", "view", "query_id", "model")
_ROUTE_KEY = ("draw", "query_id")


def _collect(frame: pl.DataFrame | pl.LazyFrame, what: str) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    raise TypeError(f"{what} must be a polars DataFrame or LazyFrame, got {type(frame).__name__}")


def _require(frame: pl.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {frame.columns}")


def _key_text(row: dict, cols: Sequence[str]) -> str:
    return ", ".join(f"{c}={row[c]!r}" for c in cols)


def all_views_cost_bounds(obs: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Per-dataset cost range over every view of ``obs`` (train and both test views).

    :func:`dars.supervision.core.cost_bounds` refuses a dataset that mixes views (so train and
    test are never pooled by accident); here pooling is the point — one scale for train and
    test — so it is applied per view and the ranges are merged. One row per dataset:
    ``dataset, cost_min, cost_max`` over ok observations, ready for ``cost_bounds=``.
    """
    obs = _collect(obs, "observations")
    _require(obs, ("dataset", "cost_usd"), "observations")
    split_cols = [c for c in ("split", "view") if c in obs.columns]
    ok = obs.filter(pl.col("status") == "ok") if "status" in obs.columns else obs
    if ok.height == 0:
        raise ValueError("observations: no rows with status == 'ok'")
    parts = (
        [_cost_bounds(part) for _, part in ok.group_by(split_cols)]
        if split_cols
        else [_cost_bounds(ok)]
    )
    return (
        pl.concat(parts)
        .group_by("dataset")
        .agg(pl.col("cost_min").min(), pl.col("cost_max").max())
        .sort("dataset")
    )


def view_utilities(
    test_obs: pl.DataFrame | pl.LazyFrame,
    *,
    lam: float = DEFAULT_LAM,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-view test utility of every (query, model).

    ``test_obs``: observation-store rows with a ``view`` column in :data:`VIEWS` (other views,
    e.g. ``train``, are rejected so they are never pooled into a test number). Only
    ``status == "ok"`` rows count (see :func:`~dars.supervision.core.prepare_observations`).

    One row per (dataset, view, query_id, model) with at least one ok observation in that view,
    sorted by that key. Columns :data:`VIEW_UTIL_COLUMNS`: ``n_obs`` = ok observations of the cell
    in the view; ``q`` = their mean score; ``c`` = their mean normalised cost; ``u = q - lam * c``.

    ``cost_bounds`` (one row per dataset: ``dataset, cost_min, cost_max``) fixes the
    normalisation scale; pass :func:`all_views_cost_bounds` of all the dataset's observations
    (train included). Default: the range over both views of ``test_obs`` (per dataset).
    """
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    obs = _collect(test_obs, "test_obs")
    _require(obs, ("view",), "test_obs")
    views = sorted(obs["view"].unique().drop_nulls().to_list())
    bad = [v for v in views if v not in VIEWS]
    if bad or obs["view"].null_count():
        raise ValueError(f"test_obs has view(s) {bad or [None]}; expected only {list(VIEWS)}")
    if not views:
        raise ValueError("test_obs is empty")
    per_view = {v: obs.filter(pl.col("view") == v) for v in views}
    if cost_bounds is None:
        cost_bounds = all_views_cost_bounds(obs)
    out = []
    for view, frame in per_view.items():
        ok = frame.filter(pl.col("status") == "ok") if "status" in frame.columns else frame
        if ok.height == 0:
            continue
        prep = prepare_observations(frame, cost_bounds=cost_bounds)
        out.append(
            prep.group_by("dataset", "query_id", "model")
            .agg(
                n_obs=pl.len().cast(pl.Int64),
                q=pl.col("score").mean(),
                c=pl.col("c_norm").mean(),
            )
            .with_columns(view=pl.lit(view, dtype=pl.String))
        )
    if not out:
        raise ValueError("test_obs: no rows with status == 'ok'")
    return (
        pl.concat(out)
        .with_columns(u=utility_expr("q", "c", lam=lam))
        .select(VIEW_UTIL_COLUMNS)
        .sort(_VIEW_CELL)
    )


def complete_views(view_util: pl.DataFrame, models: Sequence[str]) -> tuple[pl.DataFrame, int]:
    """The view utilities of the test queries every model of ``models`` answered in that view.

    ``view_util``: :func:`view_utilities` rows (one per (dataset, view, query_id, model)). A
    query some model never answered in a view (a mixed pool: not every model on every query)
    cannot be scored fairly — a router routing to that model has no utility there and the
    reference policies need every model — so it is left out of that view. Returns the kept rows
    and the number of (dataset, view, query) triples left out.
    """
    per_query = view_util.group_by("dataset", "view", "query_id").agg(
        pl.col("model").filter(pl.col("model").is_in(list(models))).n_unique().alias("_n")
    )
    keep = per_query.filter(pl.col("_n") == len(models)).drop("_n")
    kept = view_util.join(keep, on=["dataset", "view", "query_id"], how="semi")
    return kept, per_query.height - keep.height


def routed_cells(
    routes: pl.DataFrame | pl.LazyFrame,
    view_util: pl.DataFrame,
    *,
    dataset: str | None = None,
) -> pl.DataFrame:
    """Per-query test utility of a router's choices (input of :func:`bootstrap_ci`).

    Same inputs, extra keys and errors as :func:`router_utilities`. One row per (dataset, view,
    [extra keys…], draw, query_id), sorted, with ``model`` (the routed model) and its ``q``, ``c``,
    ``u`` in that view.
    """
    routes = _collect(routes, "routes")
    _require(routes, ("draw", "query_id", "model"), "routes")
    _require(view_util, VIEW_UTIL_COLUMNS, "view_util")
    if "dataset" not in routes.columns:
        if dataset is None:
            names = view_util["dataset"].unique().to_list()
            if len(names) != 1:
                raise ValueError(
                    f"routes has no dataset column and view_util holds datasets {sorted(names)}; "
                    "pass dataset="
                )
            dataset = names[0]
        routes = routes.with_columns(dataset=pl.lit(dataset, dtype=pl.String))
    elif dataset is not None:
        routes = routes.filter(pl.col("dataset") == dataset)
    routes = routes.drop("model_index", strict=False).with_columns(
        pl.col("dataset").cast(pl.String),
        pl.col("query_id").cast(pl.String),
        pl.col("model").cast(pl.String),
        pl.col("draw").cast(pl.Int32),
    )
    if routes.height == 0:
        raise ValueError(f"routes is empty (dataset={dataset!r})")
    extra = [c for c in routes.columns if c not in ("dataset", "draw", "query_id", "model")]
    route_key = ["dataset", *extra, *_ROUTE_KEY]
    dup = routes.filter(pl.struct(route_key).is_duplicated())
    if dup.height:
        raise ValueError(
            f"routes: (draw, query_id) routed more than once, e.g. "
            f"{_key_text(dup.row(0, named=True), route_key)}"
        )
    datasets = routes["dataset"].unique().to_list()
    util = view_util.filter(pl.col("dataset").is_in(datasets))
    views = util.select("dataset", "view").unique()
    absent = sorted(set(datasets) - set(views["dataset"].to_list()))
    if absent:
        raise ValueError(f"view_util has no rows for dataset(s) {absent}")

    # Every draw must route exactly the queries the view scores.
    expected = util.select("dataset", "view", "query_id").unique()
    draws = routes.select("dataset", *extra, "draw").unique()
    want = draws.join(expected, on="dataset", how="inner")
    got = routes.select("dataset", *extra, "draw", "query_id")
    skipped = want.join(got, on=["dataset", *extra, "draw", "query_id"], how="anti")
    if skipped.height:
        row = skipped.sort(["dataset", "view", *extra, "draw", "query_id"]).row(0, named=True)
        raise ValueError(
            f"routes do not route test query {row['query_id']!r} scored in view {row['view']!r} "
            f"({_key_text(row, ['dataset', *extra, 'draw'])}); "
            f"{skipped.height} (draw, view, query) pair(s) missing"
        )
    # Only the queries a view scores count: a test query the view left out (e.g. one that some
    # model of a mixed pool never answered, see complete_views) is routed but not scored.
    joined = routes.join(expected, on=["dataset", "query_id"], how="inner").join(
        util, on=list(_VIEW_CELL), how="left"
    )
    missing = joined.filter(pl.col("u").is_null())
    if missing.height:
        row = missing.sort(["dataset", "view", *extra, "draw", "query_id"]).row(0, named=True)
        raise ValueError(
            f"no test observation for routed cell (dataset={row['dataset']!r}, "
            f"view={row['view']!r}, query_id={row['query_id']!r}, model={row['model']!r}) "
            f"({_key_text(row, [*extra, 'draw'])}); {missing.height} routed cell(s) missing"
        )
    key = ["dataset", "view", *extra, "draw", "query_id"]
    return joined.select(*key, "model", "q", "c", "u").sort(key)


def router_utilities(
    routes: pl.DataFrame | pl.LazyFrame,
    view_util: pl.DataFrame,
    *,
    dataset: str | None = None,
) -> pl.DataFrame:
    """Test utility of a router's routes in every view.

    ``routes``: rows of ``routes.parquet`` (``draw, query_id, model``; ``model_index`` ignored).
    The file has no dataset column: pass ``dataset=`` (or add a ``dataset`` column, or give a
    ``view_util`` with one dataset). Any other column of ``routes`` (e.g. ``family``,
    ``supervision`` added by the caller to stack several routers) is kept as a key.

    One row per (dataset, view, [extra keys…], draw), sorted, with ``n_queries`` (test queries
    routed), ``U``/``Q``/``C`` = mean over those queries of the chosen model's ``u``/``q``/``c``
    in that view (from :func:`view_utilities`).

    Raises ``ValueError`` when a routed (query, model) has no cell in a view (naming it), when a
    (draw, query_id) is routed twice, or when a draw does not route exactly the view's queries
    (a router that skips queries would be scored on an easier set).
    """
    cells = routed_cells(routes, view_util, dataset=dataset)
    group = [c for c in cells.columns if c not in ("query_id", "model", "q", "c", "u")]
    return (
        cells.group_by(group)
        .agg(
            n_queries=pl.len().cast(pl.Int64),
            U=pl.col("u").mean(),
            Q=pl.col("q").mean(),
            C=pl.col("c").mean(),
        )
        .sort(group)
    )


def _view_arrays(group: pl.DataFrame) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """Dense (queries × models) arrays of q, c, u for one (dataset, view); error on a hole."""
    models = sorted(group["model"].unique().to_list())
    queries = sorted(group["query_id"].unique().to_list())
    if group.height != len(models) * len(queries):
        have = set(zip(group["query_id"].to_list(), group["model"].to_list(), strict=True))
        q, m = next((q, m) for q in queries for m in models if (q, m) not in have)
        raise ValueError(
            f"view_util has no cell (dataset={group['dataset'][0]!r}, view={group['view'][0]!r}, "
            f"query_id={q!r}, model={m!r}); reference policies need every (query, model)"
        )
    # Sorted by (query_id, model), so a row-major reshape gives queries × models.
    s = group.sort("query_id", "model")
    arrays = {
        col: s[col].cast(pl.Float64).to_numpy().reshape(len(queries), len(models))
        for col in ("q", "c", "u")
    }
    return queries, models, arrays


def reference_rows(view_util: pl.DataFrame) -> pl.DataFrame:
    """Reference policies on the test views, from :func:`view_utilities` rows.

    One row per (dataset, view), sorted, with ``n_queries``, ``n_models`` and, for each policy,
    mean over the view's test queries of the utility/quality/normalised cost it obtains:

    * best fixed model: ``best_model`` (argmax over models of mean ``u``; ties go to the first
      name in sorted order), ``best_U``, ``best_Q``, ``best_C``;
    * per-query oracle: ``oracle_U`` = mean over queries of ``max_m u``, with ``oracle_Q`` and
      ``oracle_C`` of the model achieving it (first sorted name on ties);
    * random routing (expectation of a uniform choice): ``random_U/Q/C`` = mean over queries and
      models.

    Every (query, model) of a (dataset, view) must be present (``ValueError`` naming a hole).
    """
    _require(view_util, VIEW_UTIL_COLUMNS, "view_util")
    rows = []
    for (ds, view), group in view_util.group_by("dataset", "view", maintain_order=False):
        _, models, a = _view_arrays(group)
        q, c, u = a["q"], a["c"], a["u"]
        best = int(np.argmax(u.mean(axis=0)))
        pick = np.argmax(u, axis=1)
        take = np.arange(u.shape[0])
        rows.append(
            {
                "dataset": ds,
                "view": view,
                "n_queries": u.shape[0],
                "n_models": u.shape[1],
                "best_model": models[best],
                "best_U": float(u[:, best].mean()),
                "best_Q": float(q[:, best].mean()),
                "best_C": float(c[:, best].mean()),
                "oracle_U": float(u.max(axis=1).mean()),
                "oracle_Q": float(q[take, pick].mean()),
                "oracle_C": float(c[take, pick].mean()),
                "random_U": float(u.mean()),
                "random_Q": float(q.mean()),
                "random_C": float(c.mean()),
            }
        )
    if not rows:
        raise ValueError("view_util is empty")
    return pl.DataFrame(rows).sort("dataset", "view")


def bootstrap_ci(
    values_per_query: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int | Sequence[int] = 0,
    ci: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean over queries.

    ``values_per_query``: one value per test query (e.g. the routed model's ``u``). Queries are
    resampled with replacement ``n_boot`` times (all resamples drawn at once with numpy); returns
    the ``(1-ci)/2`` and ``(1+ci)/2`` quantiles of the resampled means. ``seed`` goes to
    ``numpy.random.default_rng`` (e.g. :func:`dars.supervision.core.dataset_seed`), so the same
    seed gives the same interval.
    """
    x = np.asarray(values_per_query, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values_per_query must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values_per_query holds NaN or inf")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_boot), x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def draw_scores(
    cells: pl.DataFrame, *, n_boot: int = 1000, seed: int | Sequence[int] = 0
) -> pl.DataFrame:
    """Per-draw test scores with bootstrap CIs, from :func:`routed_cells` rows.

    One row per (dataset, view, [extra keys…], draw), in the order of ``cells``, with
    ``n_queries``, ``U``/``Q``/``C`` (means over the draw's queries of the routed model's
    ``u``/``q``/``c``) and ``U_low``/``U_high`` (:func:`bootstrap_ci` of the per-query ``u``
    with ``n_boot`` and ``seed``). Every draw of a view resamples with the same seed over the
    same sorted queries, so intervals of different routers are comparable.
    """
    _require(cells, ("dataset", "view", "draw", "query_id", "q", "c", "u"), "cells")
    keys = [c for c in cells.columns if c not in ("query_id", "model", "q", "c", "u")]
    rows = []
    for key, part in cells.group_by(keys, maintain_order=True):
        u = part["u"].to_numpy()
        lo, hi = bootstrap_ci(u, n_boot=n_boot, seed=seed)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n_queries": int(u.size),
                "U": float(u.mean()),
                "U_low": lo,
                "U_high": hi,
                "Q": float(part["q"].mean()),
                "C": float(part["c"].mean()),
            }
        )
    if not rows:
        raise ValueError("cells is empty")
    return pl.DataFrame(rows)


def summarise_single_shot(router_util: pl.DataFrame) -> pl.DataFrame:
    """Mean ± std over draws of :func:`router_utilities` rows (the paper's Table 4 style).

    One row per (dataset, view, [extra keys…]) — every column except ``draw`` and the value
    columns is a key — with ``n_draws`` and ``U_mean, U_std, Q_mean, Q_std, C_mean, C_std``.
    Std is the sample std over draws (ddof = 1), 0 for a single draw.
    """
    _require(router_util, ("dataset", "view", "draw", "U", "Q", "C"), "router_util")
    if router_util.height == 0:
        raise ValueError("router_util is empty")
    keys = [c for c in router_util.columns if c not in ("draw", *ROUTER_UTIL_VALUES)]
    dup = router_util.filter(pl.struct([*keys, "draw"]).is_duplicated())
    if dup.height:
        raise ValueError(
            f"router_util has more than one row for {_key_text(dup.row(0, named=True), keys)} "
            f"draw={dup['draw'][0]}"
        )
    stats = []
    for col in ("U", "Q", "C"):
        stats += [
            pl.col(col).mean().alias(f"{col}_mean"),
            pl.col(col).std(ddof=1).fill_null(0.0).alias(f"{col}_std"),
        ]
    return (
        router_util.sort([*keys, "draw"])
        .group_by(keys)
        .agg(pl.len().cast(pl.Int64).alias("n_draws"), *stats)
        .sort(keys)
    )


#: Columns of :func:`paired_gain`, in order.
PAIRED_GAIN_COLUMNS = {
    "view": pl.String,
    "n_queries": pl.Int64,
    "gain": pl.Float64,
    "gain_low": pl.Float64,
    "gain_high": pl.Float64,
}


def paired_gain(
    single_routes: pl.DataFrame,
    dars_routes: pl.DataFrame,
    view_util: pl.DataFrame,
    *,
    dataset: str,
    n_boot: int,
    seed: int,
) -> pl.DataFrame:
    """DARS gain over the single-shot routers of one family, per view, with a paired CI.

    ``single_routes``: the S draws' routes (``routes.parquet`` of ``single_shot``);
    ``dars_routes``: one router's routes; ``view_util``: :func:`view_utilities` rows of
    ``dataset``. Per test query, d = u of the DARS router's choice − mean over the S draws of u of
    draw s's choice. One row per view (sorted) with ``n_queries``, ``gain`` = mean of d (=
    U(DARS) − mean single-shot U) and ``gain_low``/``gain_high`` = :func:`bootstrap_ci` of d
    (``n_boot``, ``seed``): the same resampled queries for both routers, so the interval is of
    the difference, not of two separate means.
    """
    single = (
        routed_cells(single_routes, view_util, dataset=dataset)
        .group_by("view", "query_id")
        .agg(pl.col("u").mean().alias("u_single"))
    )
    dars = routed_cells(dars_routes, view_util, dataset=dataset).select(
        "view", "query_id", pl.col("u").alias("u_dars")
    )
    paired = dars.join(single, on=["view", "query_id"], how="full", coalesce=True)
    missing = paired.filter(pl.col("u_dars").is_null() | pl.col("u_single").is_null())
    if missing.height:
        r = missing.row(0, named=True)
        raise ValueError(
            f"paired_gain: view {r['view']!r} query {r['query_id']!r} is routed by only one of "
            "the single-shot and DARS routers"
        )
    rows = []
    for (view,), part in paired.sort("view", "query_id").group_by("view", maintain_order=True):
        d = (part["u_dars"] - part["u_single"]).to_numpy()
        lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
        rows.append(
            {
                "view": view,
                "n_queries": d.size,
                "gain": float(d.mean()),
                "gain_low": lo,
                "gain_high": hi,
            }
        )
    return pl.DataFrame(rows, schema=PAIRED_GAIN_COLUMNS)


#: Columns of :func:`score_routes`, in order.
ROUTE_SCORE_COLUMNS = {
    "view": pl.String,
    "n_draws": pl.Int64,
    "U": pl.Float64,
    "U_std": pl.Float64,
    "U_low": pl.Float64,
    "U_high": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
}


def score_routes(
    routes: pl.DataFrame,
    view_util: pl.DataFrame,
    *,
    dataset: str,
    single_shot: bool,
    n_boot: int,
    seed: int,
) -> pl.DataFrame:
    """Score one trained router's test routes in every view.

    ``routes``: the rows of one ``routes.parquet`` (``draw, query_id, model``); ``view_util``:
    :func:`view_utilities` rows of ``dataset``. One row per view (sorted) with
    :data:`ROUTE_SCORE_COLUMNS`. ``single_shot``: the routes hold S draws and the row reports
    ``n_draws = S``, ``U``/``Q``/``C`` = mean over draws and ``U_std`` = their std (no CI);
    otherwise ``n_draws = 1`` and ``U_low``/``U_high`` = percentile bootstrap CI of U over test
    queries (``n_boot`` resamples, numpy seed ``seed``).
    """
    if single_shot:
        rows: list[dict[str, Any]] = []
        ru = router_utilities(routes, view_util, dataset=dataset)
        for r in summarise_single_shot(ru).iter_rows(named=True):
            rows.append(
                {
                    "view": r["view"],
                    "n_draws": r["n_draws"],
                    "U": r["U_mean"],
                    "U_std": r["U_std"],
                    "U_low": None,
                    "U_high": None,
                    "Q": r["Q_mean"],
                    "C": r["C_mean"],
                }
            )
        return pl.DataFrame(rows, schema=ROUTE_SCORE_COLUMNS)
    scored = draw_scores(routed_cells(routes, view_util, dataset=dataset), n_boot=n_boot, seed=seed)
    return scored.select(
        "view",
        pl.lit(1, dtype=pl.Int64).alias("n_draws"),
        "U",
        pl.lit(None, dtype=pl.Float64).alias("U_std"),
        "U_low",
        "U_high",
        "Q",
        "C",
    ).cast(ROUTE_SCORE_COLUMNS)
