"""Validation, cost normalisation, per-(query, model) aggregation and the dense-array view.

Everything here is a pure function of polars frames: no paths, no Prefect. Every public function
that takes observations accepts the observation-store frame (one row per generation) as a
``DataFrame`` or ``LazyFrame`` and uses only these columns:

``dataset, query_id, model, rewrite_id, decode_id, score, cost_usd`` (required) and, when present,
``status`` (only rows with ``status == "ok"`` are used; failed generations are ignored, so a
(query, model) cell aggregates the observations that succeeded), ``split`` and ``view`` (a dataset
must hold a single (split, view) combination: filter first, e.g. ``view == "train"``, so train and
test observations are never silently pooled).

Conventions shared by the whole package:

* cost is min-max normalised **per dataset over all its ok observations in the frame passed**
  (``c_norm = (cost_usd - min) / (max - min)``, 0 for every row when the dataset's cost is
  constant). Functions that look at a subset of the observations (ablations, sub-grids) normalise
  on the full frame first, so every supervision measures cost on the same scale;
* spreads are sample standard deviations (``ddof = 1``), defined as 0 for a single observation;
* utility ``u = q_mean - lam * c_mean - beta * q_std`` with ``lam = 0.05`` and ``beta = 0.2``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from dars.utility import DEFAULT_BETA, DEFAULT_LAM, utility_expr

DATASET_KEY = ("dataset",)
QUERY_KEY = ("dataset", "query_id")
CELL_KEY = ("dataset", "query_id", "model")
OBS_KEY = ("dataset", "query_id", "model", "rewrite_id", "decode_id")
REQUIRED_COLUMNS = (*OBS_KEY, "score", "cost_usd")

#: Columns of every aggregate frame (full DARS and each ablation), in order.
AGGREGATE_COLUMNS = (
    "dataset",
    "query_id",
    "model",
    "n_obs",
    "n_rewrites",
    "q_mean",
    "q_std",
    "c_mean",
    "u",
)

Risk = Literal["all", "rewrite", "decode"]
Missing = Literal["error", "drop"]

_KEY_DTYPES: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "query_id": pl.String(),
    "model": pl.String(),
    "rewrite_id": pl.Int32(),
    "decode_id": pl.Int32(),
}


def dataset_seed(seed: int, dataset: str, *salt: int) -> list[int]:
    """Seed material for one dataset's random stream: ``[seed, crc32(dataset), *salt]``.

    Every random choice (single-shot draws, sub-grids, bootstrap) is seeded per dataset, so a
    dataset's results do not depend on which other datasets share the frame.
    """
    return [int(seed), zlib.crc32(dataset.encode("utf-8")), *salt]


def _format_key(row: dict, cols: Sequence[str]) -> str:
    return ", ".join(f"{c}={row[c]!r}" for c in cols if c in row)


def _check_weights(**weights: float) -> None:
    for name, value in weights.items():
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_models(models: Sequence[str]) -> list[str]:
    """Validate a pool order (non-empty, unique names) and return it as a list."""
    if isinstance(models, str):
        raise TypeError("models must be a sequence of model names (the pool order), not a str")
    names = list(models)
    if not names:
        raise ValueError("models (the pool order) must name at least one model")
    dup = sorted({m for m in names if names.count(m) > 1})
    if dup:
        raise ValueError(f"models (the pool order) lists {dup} more than once")
    return names


def _collect(frame: pl.DataFrame | pl.LazyFrame, what: str) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    raise TypeError(f"{what} must be a polars DataFrame or LazyFrame, got {type(frame).__name__}")


def _require_columns(columns: Sequence[str], required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(columns)}")


def check_finite(
    frame: pl.DataFrame, columns: Sequence[str], key: Sequence[str], what: str
) -> None:
    """Raise naming the column and one example key if a column holds null, NaN or ±inf."""
    for col in columns:
        bad = frame.filter(pl.col(col).is_null() | ~pl.col(col).is_finite())
        if bad.height:
            row = bad.row(0, named=True)
            raise ValueError(
                f"{what}: column {col!r} has {bad.height} null/NaN/inf value(s), e.g. "
                f"{col}={row[col]!r} at {_format_key(row, key)}"
            )


def cost_bounds(obs: ObservationsLike) -> pl.DataFrame:
    """Per-dataset cost range used for min-max normalisation.

    One row per dataset: ``dataset``, ``cost_min`` and ``cost_max`` are the smallest and largest
    ``cost_usd`` over the dataset's ok observations. Pass it as ``cost_bounds=`` to normalise
    another frame (e.g. a sub-grid or the test views) on the same scale.
    """
    return string_keys(_bounds(_prepared(obs)))


def _bounds(prep: pl.DataFrame) -> pl.DataFrame:
    return (
        prep.group_by("dataset")
        .agg(cost_min=pl.col("cost_usd").min(), cost_max=pl.col("cost_usd").max())
        .sort("dataset")
    )


def _check_bounds(bounds: pl.DataFrame, datasets: Sequence[str]) -> pl.DataFrame:
    bounds = _collect(bounds, "cost_bounds")
    _require_columns(bounds.columns, ("dataset", "cost_min", "cost_max"), "cost_bounds")
    bounds = bounds.select(
        pl.col("dataset").cast(pl.String),
        pl.col("cost_min").cast(pl.Float64),
        pl.col("cost_max").cast(pl.Float64),
    )
    check_finite(bounds, ("cost_min", "cost_max"), DATASET_KEY, "cost_bounds")
    if bounds["dataset"].is_duplicated().any():
        raise ValueError("cost_bounds has more than one row for a dataset")
    absent = sorted(set(datasets) - set(bounds["dataset"].to_list()))
    if absent:
        raise ValueError(f"cost_bounds has no row for dataset(s) {absent}")
    inverted = bounds.filter(pl.col("cost_max") < pl.col("cost_min"))
    if inverted.height:
        raise ValueError(f"cost_bounds: cost_max < cost_min for dataset {inverted['dataset'][0]!r}")
    return bounds


@dataclass(frozen=True)
class PreparedObservations:
    """Observations validated, cost-normalised and key-coded once (:func:`prepare_once`).

    Every function of this package that takes observations also accepts this object in place of
    the raw frame and then skips the preparation, so a caller computing many supervisions of one
    frame (the supervise stage) prepares it once. ``frame`` holds the rows of
    :func:`prepare_observations` in the same (canonical) order, except that ``dataset``,
    ``query_id`` and ``model`` are ``pl.Enum`` columns whose categories are sorted (integer
    codes that sort and group like the strings), plus ``_k`` (int64, the row's position in the
    canonical order, so a subset is re-sorted on one integer column) and ``_q`` (int64, the
    position of the row's (dataset, query_id) among the sorted distinct queries). Results built
    from it carry plain String keys again.
    """

    frame: pl.DataFrame

    @property
    def height(self) -> int:
        return self.frame.height


ObservationsLike = pl.DataFrame | pl.LazyFrame | PreparedObservations


def prepare_once(
    obs: ObservationsLike, *, cost_bounds: pl.DataFrame | None = None
) -> PreparedObservations:
    """Validate and prepare ``obs`` once (see :class:`PreparedObservations`); a prepared input
    is returned as is."""
    if isinstance(obs, PreparedObservations):
        if cost_bounds is not None:
            raise ValueError("observations are already prepared: cost_bounds cannot be applied")
        return obs
    return PreparedObservations(_prepare(obs, cost_bounds=cost_bounds))


def _prepared(obs: ObservationsLike, cost_bounds: pl.DataFrame | None = None) -> pl.DataFrame:
    """The coded frame of :class:`PreparedObservations` for any observations argument."""
    return prepare_once(obs, cost_bounds=cost_bounds).frame


def string_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its coded key columns (``pl.Enum``) cast back to String."""
    enums = [c for c, t in frame.schema.items() if isinstance(t, pl.Enum)]
    return frame.with_columns(pl.col(enums).cast(pl.String)) if enums else frame


def prepare_observations(
    obs: ObservationsLike,
    *,
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Validate observations and add the normalised cost.

    Returns one row per ok observation, sorted by (dataset, query_id, model, rewrite_id,
    decode_id) so that every later reduction runs in a canonical order (results do not depend on
    the row order or partitioning of the input). Columns: ``dataset, query_id, model`` (str),
    ``rewrite_id, decode_id`` (int32; rewrite -1 is the original query), ``score`` (float64),
    ``cost_usd`` (float64) and ``c_norm`` = cost min-max normalised within the dataset, using
    ``cost_bounds`` (see :func:`cost_bounds`) when given, else the frame's own range.

    Raises ``ValueError`` for missing columns, a dataset mixing several (split, view) values, an
    empty selection, null keys, null/NaN/inf score or cost on an ok row (naming the column and an
    example key) and duplicated observation keys.
    """
    return string_keys(_prepared(obs, cost_bounds).drop("_k", "_q"))


def _codes(frame: pl.DataFrame, col: str) -> tuple[pl.Series, np.ndarray]:
    """The column as an Enum of its sorted distinct values, and each row's code (int64)."""
    coded = frame[col].cast(pl.Enum(frame[col].unique().sort().to_list()))
    return coded, coded.to_physical().to_numpy().astype(np.int64)


def _prepare(
    obs: pl.DataFrame | pl.LazyFrame, *, cost_bounds: pl.DataFrame | None = None
) -> pl.DataFrame:
    if isinstance(obs, pl.LazyFrame):
        # Project and filter before collecting so a scan of the store reads only what is used.
        names = obs.collect_schema().names()
        _require_columns(names, REQUIRED_COLUMNS, "observations")
        lazy = obs.select([c for c in (*REQUIRED_COLUMNS, "status", "split", "view") if c in names])
        if "status" in names:
            lazy = lazy.filter(pl.col("status") == "ok")
        frame = lazy.collect()
    else:
        frame = _collect(obs, "observations")
        _require_columns(frame.columns, REQUIRED_COLUMNS, "observations")
        if "status" in frame.columns:
            frame = frame.filter(pl.col("status") == "ok")
    mix_cols = [c for c in ("split", "view") if c in frame.columns]
    if mix_cols and frame.select(pl.max_horizontal(pl.col(mix_cols).n_unique())).item() > 1:
        mixed = (
            frame.group_by("dataset")
            .agg(pl.struct(mix_cols).unique().alias("combos"))
            .filter(pl.col("combos").list.len() > 1)
        )
        if mixed.height:
            row = mixed.row(0, named=True)
            raise ValueError(
                f"observations for dataset {row['dataset']!r} mix several {'/'.join(mix_cols)} "
                f"values {row['combos']}; select one first, e.g. "
                "obs.filter(pl.col('view') == 'train')"
            )
    try:
        frame = frame.select(
            *(pl.col(c).cast(t) for c, t in _KEY_DTYPES.items()),
            pl.col("score").cast(pl.Float64),
            pl.col("cost_usd").cast(pl.Float64),
        )
    except pl.exceptions.InvalidOperationError as exc:
        raise ValueError(
            f"observations: a key, score or cost column has the wrong type: {exc}"
        ) from exc
    if frame.height == 0:
        raise ValueError("observations: no rows with status == 'ok'")
    for col in OBS_KEY:
        if frame[col].null_count():
            row = frame.filter(pl.col(col).is_null()).row(0, named=True)
            raise ValueError(
                f"observations: key column {col!r} is null at {_format_key(row, OBS_KEY)}"
            )
    check_finite(frame, ("score", "cost_usd"), OBS_KEY, "observations (status ok)")
    # Integer codes whose order is the order of the keys: one int64 sort key replaces a sort on
    # five columns (three of them strings), and duplicates are adjacent equal keys.
    enums, codes = {}, {}
    for col in ("dataset", "query_id", "model"):
        enums[col], codes[col] = _codes(frame, col)
    for col in ("rewrite_id", "decode_id"):
        values = frame[col].to_numpy().astype(np.int64)
        lo = int(values.min())
        # Offsets from the minimum keep the order; ranks only when the ids are spread out.
        if int(values.max()) - lo < 4 * values.size:
            codes[col] = values - lo
        else:
            codes[col] = frame[col].rank("dense").to_numpy().astype(np.int64) - 1
    sizes = [int(codes[c].max()) + 1 for c in OBS_KEY]
    if float(np.prod([float(n) for n in sizes])) < 2.0**62:
        key = np.zeros(frame.height, dtype=np.int64)
        for col, size in zip(OBS_KEY, sizes, strict=True):
            key = key * size + codes[col]
        order = np.argsort(key, kind="stable")
        key = key[order]
        duplicated = bool(key.size > 1 and (key[1:] == key[:-1]).any())
    else:  # too many distinct values for one int64: sort on the coded columns
        order = (
            pl.DataFrame({c: codes[c] for c in OBS_KEY})
            .with_row_index("_i")
            .sort(list(OBS_KEY))["_i"]
            .to_numpy()
        )
        duplicated = frame.select(pl.struct(OBS_KEY).is_duplicated().any()).item()
    if duplicated:
        dup = frame.filter(pl.struct(OBS_KEY).is_duplicated())
        raise ValueError(
            f"observations: {dup.height} rows share an observation key, e.g. "
            f"{_format_key(dup.row(0, named=True), OBS_KEY)}; each key must appear once"
        )
    datasets = enums["dataset"].dtype.categories.to_list()
    bounds = _bounds(frame) if cost_bounds is None else _check_bounds(cost_bounds, datasets)
    lo_by_code = np.empty(len(datasets))
    hi_by_code = np.empty(len(datasets))
    for name, lo_v, hi_v in bounds.select("dataset", "cost_min", "cost_max").iter_rows():
        if name in datasets:
            lo_by_code[datasets.index(name)] = lo_v
            hi_by_code[datasets.index(name)] = hi_v
    d = codes["dataset"][order]
    q = codes["query_id"][order]
    frame = pl.DataFrame(
        [enums[c].gather(order) for c in ("dataset", "query_id", "model")]
        + [pl.Series(c, frame[c].to_numpy()[order]) for c in frame.columns[3:]]
    )
    # Normalise with numpy on the sorted rows: results must not depend on how the input was split.
    cost = frame["cost_usd"].to_numpy()
    lo = lo_by_code[d]
    span = hi_by_code[d] - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        c_norm = np.where(span > 0, (cost - lo) / span, 0.0)
    new_query = np.ones(frame.height, dtype=bool)
    new_query[1:] = (d[1:] != d[:-1]) | (q[1:] != q[:-1])
    return frame.with_columns(
        c_norm=pl.Series(c_norm, dtype=pl.Float64),
        _k=pl.Series(np.arange(frame.height, dtype=np.int64)),
        _q=pl.Series(np.cumsum(new_query) - 1, dtype=pl.Int64),
    )


def normalise_cost(
    obs: ObservationsLike, *, cost_bounds: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Alias of :func:`prepare_observations`: ok observations with the per-dataset ``c_norm``."""
    return prepare_observations(obs, cost_bounds=cost_bounds)


def with_cell_ids(prep: pl.DataFrame) -> pl.DataFrame:
    """A coded frame (:class:`PreparedObservations`, canonical order) with ``_cell`` (int64, one
    per (dataset, query_id, model)) and ``_cr`` (int64, one per (cell, rewrite_id)), both
    increasing along the rows: grouping on them with ``maintain_order=True`` gives the groups
    sorted by key, each summed in the canonical row order, without hashing strings."""
    n_models = len(prep.schema["model"].categories)  # type: ignore[attr-defined]
    lo, hi = prep["rewrite_id"].min(), prep["rewrite_id"].max()
    span = int(hi) - int(lo) + 1  # type: ignore[arg-type]
    cell = pl.col("_q") * n_models + pl.col("model").to_physical()
    return prep.with_columns(_cell=cell).with_columns(
        _cr=pl.col("_cell") * span + (pl.col("rewrite_id").cast(pl.Int64) - lo)
    )


def _aggregate_prepared(prep: pl.DataFrame, *, lam: float, beta: float, risk: Risk) -> pl.DataFrame:
    if risk not in ("all", "rewrite", "decode"):
        raise ValueError(f"risk must be one of 'all', 'rewrite', 'decode', got {risk!r}")
    _check_weights(lam=lam, beta=beta)
    cell = list(CELL_KEY)
    coded = "_k" in prep.columns and isinstance(prep.schema["model"], pl.Enum)
    # Callers may pass filtered/joined frames; re-sorting keeps the summation order canonical.
    if not coded:
        prep = prep.sort(OBS_KEY).rechunk()
    elif not prep["_k"].is_sorted():  # a coded frame's canonical position: one integer column
        prep = prep.sort("_k").rechunk()
    if coded:
        # One integer per cell, increasing with (dataset, query_id, model): grouping the sorted
        # rows in order gives the cells sorted, with the same per-cell summation order.
        prep = with_cell_ids(prep)
        by, keys, order = ["_cell"], [pl.col(cell).first()], True
    else:
        by, keys, order = cell, [], False
    # polars std is ddof=1 and null for one value; the convention here is 0 for one observation.
    stats = prep.group_by(by, maintain_order=order).agg(
        *keys,
        n_obs=pl.len().cast(pl.Int64),
        n_rewrites=pl.col("rewrite_id").n_unique().cast(pl.Int64),
        q_mean=pl.col("score").mean(),
        q_std=pl.col("score").std(ddof=1).fill_null(0.0),
        c_mean=pl.col("c_norm").mean(),
    )
    if risk != "all":
        if coded:
            per_rewrite = prep.group_by("_cr", maintain_order=True).agg(
                pl.col("_cell").first(),
                m_r=pl.col("score").mean(),
                s_r=pl.col("score").std(ddof=1).fill_null(0.0),
            )
        else:
            per_rewrite = prep.group_by([*by, "rewrite_id"]).agg(
                m_r=pl.col("score").mean(), s_r=pl.col("score").std(ddof=1).fill_null(0.0)
            )
        # Sorted so the second-level reduction also runs in a canonical order.
        if not coded:
            per_rewrite = per_rewrite.sort([*cell, "rewrite_id"])
        if risk == "rewrite":
            sigma = pl.col("m_r").std(ddof=1).fill_null(0.0)
        else:
            sigma = pl.col("s_r").mean()
        risk_frame = per_rewrite.group_by(by, maintain_order=order).agg(q_std=sigma)
        stats = stats.drop("q_std").join(risk_frame, on=by, how="left", maintain_order="left")
    stats = stats.with_columns(u=utility_expr("q_mean", "c_mean", "q_std", lam=lam, beta=beta))
    return string_keys(
        stats.select(AGGREGATE_COLUMNS) if coded else stats.select(AGGREGATE_COLUMNS).sort(cell)
    )


def aggregate(
    obs: ObservationsLike,
    *,
    lam: float = DEFAULT_LAM,
    beta: float = DEFAULT_BETA,
    risk: Risk = "all",
    cost_bounds: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Full DARS statistics: one row per (dataset, query_id, model) with an ok observation.

    Columns (:data:`AGGREGATE_COLUMNS`):

    * ``n_obs`` — number of ok observations of the cell (all rewrites × decodes);
    * ``n_rewrites`` — number of distinct formulations (rewrite ids, -1 = original) among them;
    * ``q_mean`` — mean score over those observations;
    * ``q_std`` — the spread σ that enters the utility. ``risk="all"`` (full DARS): sample std
      (ddof=1) of the scores, 0 with one observation; ``risk="rewrite"``: sample std of the
      per-rewrite mean scores (0 with one rewrite); ``risk="decode"``: unweighted mean over
      rewrites of the within-rewrite sample std (0 for a rewrite with one decode);
    * ``c_mean`` — mean normalised cost ``c_norm`` (see :func:`prepare_observations`);
    * ``u`` — ``q_mean - lam * c_mean - beta * q_std``.

    Cells with no ok observation are absent; the label functions decide what that means.
    """
    return _aggregate_prepared(_prepared(obs, cost_bounds), lam=lam, beta=beta, risk=risk)


@dataclass(frozen=True)
class QueryModelArrays:
    """Dense (rows × models) view of a long frame keyed by (index…, model).

    ``keys`` has one row per index value (e.g. (dataset, query_id)), sorted; row ``i`` of every
    array in ``values`` belongs to ``keys[i]`` and column ``j`` to ``models[j]`` (the pool order).
    """

    keys: pl.DataFrame
    models: tuple[str, ...]
    values: dict[str, np.ndarray]

    def __getitem__(self, column: str) -> np.ndarray:
        return self.values[column]


def to_arrays(
    frame: pl.DataFrame | pl.LazyFrame,
    models: Sequence[str],
    columns: Sequence[str],
    *,
    index: Sequence[str] = QUERY_KEY,
    missing: Missing = "error",
) -> QueryModelArrays:
    """Pivot a long frame (one row per (index…, model)) into dense arrays in pool order.

    Example: ``to_arrays(agg, pool, ["q_mean", "c_mean", "q_std"])`` gives (n_queries, n_models)
    arrays for a router. ``missing`` says what to do when an index row lacks a pool model:
    ``"error"`` raises naming the first missing (index…, model); ``"drop"`` drops that index row
    (e.g. the whole query) from the result. A model not in ``models`` raises.
    """
    names = check_models(models)
    frame = _collect(frame, "frame")
    index = list(index)
    _require_columns(frame.columns, [*index, "model", *columns], "frame")
    if missing not in ("error", "drop"):
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    unknown = sorted(set(frame["model"].unique().to_list()) - set(names))
    if unknown:
        raise ValueError(f"frame has model(s) {unknown} that are not in the pool {names}")
    if frame.select(pl.struct([*index, "model"]).is_duplicated().any()).item():
        raise ValueError(f"frame has more than one row for some ({', '.join(index)}, model)")
    model_idx = pl.DataFrame(
        {"model": names, "_col": np.arange(len(names), dtype=np.int64)},
        schema={"model": frame.schema["model"], "_col": pl.Int64},
    )
    counts = frame.group_by(index).agg(_n=pl.len())
    incomplete = counts.filter(pl.col("_n") < len(names))
    if incomplete.height:
        if missing == "error":
            first = incomplete.sort(index).row(0, named=True)
            have = set(frame.join(incomplete.sort(index).head(1), on=index)["model"].to_list())
            absent = [m for m in names if m not in have]
            raise ValueError(
                f"no observation for model(s) {absent} at {_format_key(first, index)}; "
                "pass missing='drop' to drop such queries"
            )
        frame = frame.join(incomplete.select(index), on=index, how="anti")
    keys = frame.select(index).unique().sort(index)
    keyed = frame.join(keys.with_row_index("_row"), on=index, how="left").join(
        model_idx, on="model", how="left"
    )
    rows = keyed["_row"].to_numpy().astype(np.int64)
    cols = keyed["_col"].to_numpy()
    values = {}
    for col in columns:
        arr = np.empty((keys.height, len(names)), dtype=np.float64)
        arr[rows, cols] = keyed[col].cast(pl.Float64).to_numpy()
        values[col] = arr
    return QueryModelArrays(keys=string_keys(keys), models=tuple(names), values=values)


def restrict_to_pool(
    prep: pl.DataFrame, models: Sequence[str], *, missing: Missing = "error"
) -> pl.DataFrame:
    """Keep the queries of a prepared frame that have an ok observation for every pool model.

    Adds ``model_index`` (int32, position in ``models``). A model outside the pool raises; a query
    lacking a pool model raises (``missing="error"``, naming it) or is dropped (``"drop"``).
    """
    names = check_models(models)
    if missing not in ("error", "drop"):
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    unknown = sorted(set(prep["model"].unique().to_list()) - set(names))
    if unknown:
        raise ValueError(f"observations have model(s) {unknown} that are not in the pool {names}")
    have = prep.group_by(QUERY_KEY).agg(_n=pl.col("model").n_unique())
    incomplete = have.filter(pl.col("_n") < len(names)).sort(QUERY_KEY)
    if incomplete.height:
        if missing == "error":
            first = incomplete.row(0, named=True)
            present = set(prep.join(incomplete.head(1), on=QUERY_KEY)["model"].to_list())
            raise ValueError(
                f"no ok observation for model(s) {[m for m in names if m not in present]} at "
                f"{_format_key(first, QUERY_KEY)}; pass missing='drop' to drop such queries"
            )
        prep = prep.join(incomplete.select(QUERY_KEY), on=QUERY_KEY, how="anti")
        if prep.height == 0:
            raise ValueError("no query has an ok observation for every pool model")
    dtype = prep.schema["model"]
    if isinstance(dtype, pl.Enum):  # a coded frame: map the codes, no string is compared
        # Every code present is a pool model (checked above); other categories never occur.
        lut = np.array([names.index(m) if m in names else -1 for m in dtype.categories.to_list()])
        codes = prep["model"].to_physical().to_numpy()
        return prep.with_columns(model_index=pl.Series(lut[codes], dtype=pl.Int32))
    model_idx = pl.DataFrame(
        {"model": names, "model_index": list(range(len(names)))},
        schema={"model": pl.String, "model_index": pl.Int32},
    )
    return prep.join(model_idx, on="model", how="left")
