"""Schemas of the two stores and the validation every frame passes before it is written.

Observations: one row per generation, i.e. one model's answer to one formulation of one query.
The key is (dataset, split, query_id, model, rewrite_id, decode_id); ``rewrite_id = -1`` is the
original query, ``0..K-1`` the rewrites, ``decode_id`` numbers the stochastic decodes of that
prompt. A key is stored at most once; ``status`` says whether that generation succeeded.

Rewrites: one row per (dataset, split, query_id, rewrite_id) with the rewriter's text and the
validity checks computed on it.

Each schema is given twice, as a pyarrow schema (``*_SCHEMA``, what readers such as DuckDB or
pyarrow.dataset see) and as a polars schema (``*_POLARS_SCHEMA``). Partition columns (dataset,
split and, for observations, model) live only in the directory names, never inside the files, so
the hive readers cannot disagree with the file about their value or type; ``*_HIVE_SCHEMA`` types
them as String explicitly (generic readers would infer a model named ``7`` as an integer).

``validate_observations`` / ``validate_rewrites`` take a polars DataFrame (or a list of dicts)
and return it with canonical column order and dtypes, or raise :class:`StorageError` listing every
problem with the column name and an example row (``row i`` = 0-based position in the given rows,
shown with the row's key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from dars.storage.layout import _NAME_RE, SPLITS, StorageError

STATUSES: tuple[str, ...] = ("ok", "error")
VIEWS: tuple[str, ...] = ("train", "test_rewrite", "test_decode")
ORIGINAL_REWRITE_ID = -1

_UTC_US = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Column:
    """One column: arrow and polars types, whether nulls are allowed, and what it means."""

    name: str
    arrow: pa.DataType
    polars: Any
    nullable: bool
    doc: str


def _c(name: str, kind: str, doc: str, *, nullable: bool = False) -> Column:
    types = {
        "str": (pa.string(), pl.String),
        "i32": (pa.int32(), pl.Int32),
        "i64": (pa.int64(), pl.Int64),
        "f64": (pa.float64(), pl.Float64),
        "bool": (pa.bool_(), pl.Boolean),
        "ts": (pa.timestamp("us", tz="UTC"), _UTC_US),
    }
    arrow, polars = types[kind]
    return Column(name, arrow, polars, nullable, doc)


OBSERVATION_COLUMNS: tuple[Column, ...] = (
    _c("dataset", "str", "benchmark name (partition)"),
    _c("split", "str", "train | test (partition)"),
    _c("query_id", "str", "stable id of the benchmark item"),
    _c("model", "str", "pool model name (partition)"),
    _c("view", "str", "train | test_rewrite | test_decode"),
    _c("rewrite_id", "i32", "-1 = original query, 0..K-1 = rewrite"),
    _c("decode_id", "i32", "index of the stochastic decode of that prompt, from 0"),
    _c("prompt_sha256", "str", "sha256 of the rendered prompt ('' when unknown, e.g. imported)"),
    _c("response", "str", "raw model output", nullable=True),
    _c("parsed", "str", "final answer extracted by the benchmark scorer", nullable=True),
    _c("parse_ok", "bool", "the scorer found an answer in the response"),
    _c("score", "f64", "quality in [0, 1]; null when status = error", nullable=True),
    _c("prompt_tokens", "i64", "input tokens billed"),
    _c("completion_tokens", "i64", "output tokens billed"),
    _c("cost_usd", "f64", "cost of the call in USD (>= 0)"),
    _c("latency_s", "f64", "wall time of the successful (or last) attempt, seconds"),
    _c("status", "str", "ok | error"),
    _c("error", "str", "error message when status = error (never contains a key)", nullable=True),
    _c("attempts", "i32", "calls made for this key so far, over all runs (>= 1)"),
    _c("run_id", "str", "id of the run that wrote the row"),
    _c("created_at", "ts", "when the row was produced (UTC, microseconds)"),
)
OBSERVATION_KEY: tuple[str, ...] = (
    "dataset",
    "split",
    "query_id",
    "model",
    "rewrite_id",
    "decode_id",
)
OBSERVATION_PARTITION: tuple[str, ...] = ("dataset", "split", "model")

REWRITE_COLUMNS: tuple[Column, ...] = (
    _c("dataset", "str", "benchmark name (partition)"),
    _c("split", "str", "train | test (partition)"),
    _c("query_id", "str", "stable id of the benchmark item"),
    _c("rewrite_id", "i32", "0..K-1"),
    _c("text", "str", "the rewritten question"),
    _c("rewriter", "str", "model name of the rewriter"),
    _c("complete", "bool", "the rewriter returned a non-empty, untruncated text"),
    _c("dup_original", "bool", "text equals the original question after normalisation"),
    _c("dup_rewrite", "bool", "text equals an earlier rewrite of the same query"),
    _c("struct_ok", "bool", "structure kept (choices, passage references, placeholders)"),
    _c("similarity", "f64", "semantic similarity to the original, when computed", nullable=True),
    _c("numbers_ok", "bool", "every number of the original appears in the rewrite"),
    _c("review_flag", "bool", "flagged for human review"),
    _c("created_at", "ts", "when the rewrite was produced (UTC, microseconds)"),
)
REWRITE_KEY: tuple[str, ...] = ("dataset", "split", "query_id", "rewrite_id")
REWRITE_PARTITION: tuple[str, ...] = ("dataset", "split")


def _arrow_schema(cols: Sequence[Column], drop: Sequence[str] = ()) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, c.arrow, nullable=c.nullable) for c in cols if c.name not in drop]
    )


OBSERVATION_SCHEMA: pa.Schema = _arrow_schema(OBSERVATION_COLUMNS)
OBSERVATION_POLARS_SCHEMA: dict[str, Any] = {c.name: c.polars for c in OBSERVATION_COLUMNS}
OBSERVATION_HIVE_SCHEMA: dict[str, Any] = {k: pl.String for k in OBSERVATION_PARTITION}
OBSERVATION_FILE_SCHEMA: pa.Schema = _arrow_schema(OBSERVATION_COLUMNS, OBSERVATION_PARTITION)

REWRITE_SCHEMA: pa.Schema = _arrow_schema(REWRITE_COLUMNS)
REWRITE_POLARS_SCHEMA: dict[str, Any] = {c.name: c.polars for c in REWRITE_COLUMNS}
REWRITE_HIVE_SCHEMA: dict[str, Any] = {k: pl.String for k in REWRITE_PARTITION}
REWRITE_FILE_SCHEMA: pa.Schema = _arrow_schema(REWRITE_COLUMNS, REWRITE_PARTITION)

# Error messages come from provider exceptions; a misbehaving client could echo a key into them.
_SECRET_RE = re.compile(r"(sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_-]{30,})")


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def _as_frame(rows: pl.DataFrame | Sequence[Mapping[str, Any]], what: str) -> pl.DataFrame:
    if isinstance(rows, pl.DataFrame):
        return rows
    if isinstance(rows, pl.LazyFrame):
        return rows.collect()
    if isinstance(rows, Sequence) and all(isinstance(r, Mapping) for r in rows):
        if not rows:
            raise StorageError(f"{what}: no rows given")
        return pl.DataFrame(list(rows), infer_schema_length=None)
    raise StorageError(f"{what}: expected a polars DataFrame or a list of dicts, got {type(rows)}")


def _key_text(row: Mapping[str, Any], key: Sequence[str], skip: str | None = None) -> str:
    return ", ".join(f"{k}={row[k]!r}" for k in key if k in row and k != skip)


def _describe(df: pl.DataFrame, idx: int, key: Sequence[str], col: str | None) -> str:
    row = df.row(idx, named=True)
    keys = _key_text(row, key, col)
    shown = f" ({keys})" if keys else ""
    value = f": {col}={row[col]!r}" if col is not None and col in row else ""
    return f"row {idx}{shown}{value}"


class _Problems:
    """Collects every problem of a frame so one error lists them all."""

    def __init__(self, what: str, key: Sequence[str]) -> None:
        self.what = what
        self.key = key
        self.lines: list[str] = []

    def add(self, msg: str) -> None:
        self.lines.append(msg)

    def check(self, df: pl.DataFrame, bad: pl.Expr, col: str | None, problem: str) -> None:
        """Record ``problem`` if any row satisfies ``bad`` (null counts as not bad)."""
        hits = df.with_row_index("__row").filter(bad.fill_null(False)).get_column("__row")
        if hits.len():
            col_txt = f"column '{col}': " if col else ""
            example = _describe(df, int(hits[0]), self.key, col)
            self.add(f"{col_txt}{problem} in {hits.len()} row(s), e.g. {example}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise StorageError(f"{self.what} failed validation:\n  " + "\n  ".join(self.lines))


def _coerce(s: pl.Series, col: Column) -> tuple[pl.Series | None, str | None]:
    """Cast ``s`` to the column's dtype when that is lossless, else return why not."""
    dt = s.dtype
    target = col.polars
    if dt == target:
        return s, None
    if dt == pl.Null:
        return s.cast(target), None
    if target == pl.String and dt in (pl.Categorical, pl.Enum):
        return s.cast(pl.String), None
    if target in (pl.Int32, pl.Int64) and dt.is_integer():
        out = s.cast(target, strict=False)
        overflow = out.is_null() & s.is_not_null()
        if overflow.any():
            return None, f"value {s.filter(overflow)[0]} does not fit in {target}"
        return out, None
    if target == pl.Float64 and (dt.is_float() or dt.is_integer()):
        return s.cast(pl.Float64), None
    if isinstance(target, pl.Datetime) and isinstance(dt, pl.Datetime):
        if dt.time_zone is None:
            return None, "timestamps must be timezone-aware (UTC); got a naive Datetime"
        return s.dt.convert_time_zone("UTC").cast(target), None
    return None, f"expected {target}, got {dt}"


def _conform(df: pl.DataFrame, cols: Sequence[Column], problems: _Problems) -> pl.DataFrame | None:
    names = [c.name for c in cols]
    missing = [n for n in names if n not in df.columns]
    extra = [n for n in df.columns if n not in names]
    if missing:
        problems.add(f"missing column(s): {', '.join(missing)}")
    if extra:
        problems.add(f"unexpected column(s): {', '.join(extra)}; allowed: {', '.join(names)}")
    if missing or extra:
        return None
    out = []
    for c in cols:
        s, why = _coerce(df.get_column(c.name), c)
        if why is not None:
            problems.add(f"column '{c.name}': {why}")
            continue
        out.append(s)
    if len(out) != len(cols):
        return None
    df = pl.DataFrame(out)
    for c in cols:
        if not c.nullable:
            problems.check(df, pl.col(c.name).is_null(), c.name, "null not allowed")
    return df


def _check_name_values(df: pl.DataFrame, problems: _Problems, cols: Sequence[str]) -> None:
    for col in cols:
        bad = ~pl.col(col).str.contains(_NAME_RE.pattern) | pl.col(col).is_in([".", ".."])
        problems.check(df, bad, col, f"not usable in a path (must match {_NAME_RE.pattern})")


def _check_in(df: pl.DataFrame, problems: _Problems, col: str, allowed: Sequence[str]) -> None:
    problems.check(
        df, ~pl.col(col).is_in(list(allowed)), col, f"invalid value; allowed: {', '.join(allowed)}"
    )


def _check_finite(df: pl.DataFrame, problems: _Problems, col: str) -> None:
    problems.check(df, ~pl.col(col).is_finite(), col, "NaN/inf not allowed")


def _check_unique(df: pl.DataFrame, problems: _Problems, key: Sequence[str]) -> None:
    groups = (
        df.with_row_index("__row")
        .group_by(list(key), maintain_order=True)
        .agg(pl.col("__row"))
        .filter(pl.col("__row").list.len() > 1)
    )
    if groups.height:
        first = groups.row(0, named=True)
        rows = ", ".join(str(r) for r in first["__row"][:5])
        problems.add(
            f"duplicate key ({', '.join(key)}): {groups.height} key(s) occur more than once, "
            f"e.g. rows {rows} share ({_key_text(first, key)})"
        )


def validate_observations(
    rows: pl.DataFrame | Sequence[Mapping[str, Any]], *, what: str = "observations"
) -> pl.DataFrame:
    """Check and normalise observation rows; return them in ``OBSERVATION_COLUMNS`` order.

    One row per generation (see the module docstring). Lossless casts are applied (any integer
    width, ints to float, other time zones to UTC); everything else is an error. Checks: exact
    column set, dtypes, non-null columns, split/view/status values, path-safe dataset and model,
    view consistent with split and rewrite_id, ``score`` in [0, 1] and present exactly when
    status = ok, error message present when status = error, finite non-negative cost/latency,
    non-negative token counts, attempts >= 1, no duplicate key.
    """
    p = _Problems(what, OBSERVATION_KEY)
    df = _conform(_as_frame(rows, what), OBSERVATION_COLUMNS, p)
    if df is None:
        p.raise_if_any()
        raise AssertionError("unreachable")  # pragma: no cover
    c = pl.col
    _check_name_values(df, p, ["dataset", "model"])
    _check_in(df, p, "split", SPLITS)
    _check_in(df, p, "view", VIEWS)
    _check_in(df, p, "status", STATUSES)
    p.check(
        df,
        c("view").is_in(list(VIEWS)) & ((c("view") == "train") != (c("split") == "train")),
        "view",
        "view 'train' goes with split 'train' and test views with split 'test'",
    )
    p.check(
        df,
        (c("view") == "test_decode") & (c("rewrite_id") != ORIGINAL_REWRITE_ID),
        "rewrite_id",
        "view 'test_decode' uses the original query (rewrite_id = -1)",
    )
    p.check(
        df,
        (c("view") == "test_rewrite") & (c("rewrite_id") < 0),
        "rewrite_id",
        "view 'test_rewrite' needs a rewrite (rewrite_id >= 0)",
    )
    p.check(df, c("rewrite_id") < ORIGINAL_REWRITE_ID, "rewrite_id", "must be >= -1")
    p.check(df, c("decode_id") < 0, "decode_id", "must be >= 0")
    for col in ("score", "cost_usd", "latency_s"):
        _check_finite(df, p, col)
    p.check(
        df,
        c("score").is_finite() & ((c("score") < 0) | (c("score") > 1)),
        "score",
        "must be in [0, 1]",
    )
    p.check(df, (c("status") == "ok") & c("score").is_null(), "score", "status 'ok' needs a score")
    p.check(
        df,
        (c("status") == "error") & c("score").is_not_null(),
        "score",
        "status 'error' must have a null score",
    )
    p.check(
        df,
        (c("status") == "error") & (c("error").is_null() | (c("error") == "")),
        "error",
        "status 'error' needs an error message",
    )
    p.check(
        df,
        c("error").str.contains(_SECRET_RE.pattern),
        "error",
        "looks like it contains an API key; scrub it before storing",
    )
    for col in ("cost_usd", "latency_s", "prompt_tokens", "completion_tokens"):
        p.check(df, c(col) < 0, col, "must be >= 0")
    p.check(df, c("attempts") < 1, "attempts", "must be >= 1")
    _check_unique(df, p, OBSERVATION_KEY)
    p.raise_if_any()
    return df


def validate_rewrites(
    rows: pl.DataFrame | Sequence[Mapping[str, Any]], *, what: str = "rewrites"
) -> pl.DataFrame:
    """Check and normalise rewrite rows; return them in ``REWRITE_COLUMNS`` order.

    One row per (dataset, split, query_id, rewrite_id). Checks: exact column set, dtypes,
    non-null columns, split value, path-safe dataset, rewrite_id >= 0, finite similarity,
    no duplicate key.
    """
    p = _Problems(what, REWRITE_KEY)
    df = _conform(_as_frame(rows, what), REWRITE_COLUMNS, p)
    if df is None:
        p.raise_if_any()
        raise AssertionError("unreachable")  # pragma: no cover
    _check_name_values(df, p, ["dataset"])
    _check_in(df, p, "split", SPLITS)
    p.check(df, pl.col("rewrite_id") < 0, "rewrite_id", "must be >= 0 (-1 is the original)")
    _check_finite(df, p, "similarity")
    _check_unique(df, p, REWRITE_KEY)
    p.raise_if_any()
    return df
