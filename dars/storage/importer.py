"""Bring your own generations: import a CSV, JSONL or Parquet table into the observation store.

One input row = one generation (one model's scored answer to one formulation of one query).

Columns (after renaming with ``mapping``, a dict {your column: our column}; map a column to None
to ignore it — any other unknown column is an error, so a misspelt column never goes unnoticed):

============================  =========  ========================================================
column                        required   meaning / default
============================  =========  ========================================================
query_id                      yes        id of the benchmark item
model                         yes        model name (letters, digits, ``.``, ``_``, ``-``)
score                         yes        quality in [0, 1] (true/false accepted as 1/0)
dataset                       no         else the ``dataset=`` argument (one of them is required)
split                         no         train | test; else the ``split=`` argument (required)
rewrite_id                    no         -1 (the original query) — i.e. decode-only data
decode_id                     no         running index per (query, model, rewrite) in file order
view                          no         train for split train; test_decode for the original,
                                         test_rewrite for rewrites in split test
cost_usd                      no         else from prompt/completion tokens × ``prices``; 0 when
                                         neither cost nor tokens are given (cost-blind data)
prompt_tokens,                no         0
completion_tokens
latency_s                     no         0
response, parsed              no         null
parse_ok                      no         true
prompt                        no         its sha256 becomes prompt_sha256 (else '')
question                      no         the query's text: stored in the dataset's queries table
                                         (``dars.storage.queries``), so the dataset can be
                                         supervised, trained and evaluated from the store alone
context, gold, task_type      no         a passage shown with the question, the reference answer,
                                         a registered task type (only with ``question``)
============================  =========  ========================================================

Names become partition values, so dataset and model values must be path-safe (letters, digits,
``.``, ``_``, ``-``). ``rename_values`` maps given values to new ones ({"model": {"gpt-4o[x]":
"gpt-4o-x"}}) and ``slug_names`` turns every other unsafe value into a slug (runs of other
characters become ``-``: ``college_mathematics/few`` → ``college_mathematics-few``); both are
recorded in the import's manifest (``imports/<run_id>.json``) with the original values. Without a
split column or argument, ``test_fraction`` sends a seeded share of each dataset's queries to the
test split (by a hash of seed and query id, so the split does not depend on row order).

Every row is checked before anything is written; a bad file raises :class:`StorageError` whose
lines read ``<file>: row <n>, column '<col>': <problem>`` (row = 1-based record number, the CSV
header excluded; for JSONL the line number). Imported rows get status ok, attempts 1, the given
``run_id`` (default ``import-<sha256 of the file, 12 hex>``) and go to shard 0 of their
(dataset, split, model) partition, except keys already stored, which stay in their shard.
Merge rules are those of ``write_observations``: keys already stored with status ok are skipped.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from dars.storage.layout import _NAME_RE, SPLITS, RunLayout, StorageError
from dars.storage.queries import merge_queries, query_conflicts
from dars.storage.schemas import OBSERVATION_COLUMNS, VIEWS
from dars.storage.store import WriteCounts, atomic_write_text, key_shards, write_observations

REQUIRED: tuple[str, ...] = ("query_id", "model", "score")
OPTIONAL: tuple[str, ...] = (
    "dataset",
    "split",
    "rewrite_id",
    "decode_id",
    "view",
    "cost_usd",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "response",
    "parsed",
    "parse_ok",
    "prompt",
    "question",
    "context",
    "gold",
    "task_type",
)
#: Columns that describe the query, not the generation: they go to the queries table.
QUERY_TEXT_COLS: tuple[str, ...] = ("question", "context", "gold", "task_type")
_INT_COLS = ("rewrite_id", "decode_id", "prompt_tokens", "completion_tokens")
_FLOAT_COLS = ("score", "cost_usd", "latency_s")
_ROW = "__row"
_MAX_LINES = 30


@dataclass(frozen=True)
class ImportResult:
    """What an import did: rows read, the run id stamped on them, the (dataset, split, model)
    partitions touched, the merge counts (``skipped_ok`` = keys the store already had), the
    values renamed ({column: {original: stored}}), one summary per dataset (``datasets``:
    name → ``{"models": [...], "queries": {split: n}, "decodes_per_pair": [min, max],
    "queries_stored": bool}``) and the manifest written (``imports/<run_id>.json``)."""

    path: Path
    rows: int
    run_id: str
    partitions: tuple[tuple[str, str, str], ...]
    counts: WriteCounts
    renamed: dict[str, dict[str, str]]
    datasets: dict[str, dict[str, Any]]
    manifest: Path


class _Errors:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def rows(self, df: pl.DataFrame, bad: pl.Expr, col: str, problem: str) -> None:
        """Record ``problem`` for the rows where ``bad`` holds (null = fine), showing values."""
        hits = df.filter(bad.fill_null(False))
        for row in hits.head(3).iter_rows(named=True):
            value = f" (got {row[col]!r})" if col in row else ""
            self.lines.append(f"{self.path}: row {row[_ROW]}, column '{col}': {problem}{value}")
        if hits.height > 3:
            self.lines.append(f"{self.path}: column '{col}': … {hits.height - 3} more row(s)")

    def add(self, msg: str) -> None:
        self.lines.append(f"{self.path}: {msg}")

    def raise_if_any(self) -> None:
        if self.lines:
            shown = self.lines[:_MAX_LINES]
            more = len(self.lines) - len(shown)
            tail = [f"… and {more} more problem(s)"] if more else []
            if len(self.lines) == 1:  # the common case reads as one line
                raise StorageError(f"import failed, nothing was written: {self.lines[0]}")
            raise StorageError(
                "import failed, nothing was written:\n  " + "\n  ".join(shown + tail)
            )


def _stringify(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(type(value).__name__)


def _check_utf8(path: Path, raw: bytes, errors: _Errors) -> None:
    """Report the first line of a text file that is not UTF-8 (polars would only say "invalid
    utf-8 sequence", without a row)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n")  # the header is line 1, so this is the record
        errors.add(
            f"row {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        )
        errors.raise_if_any()


def _read(path: Path, errors: _Errors) -> pl.DataFrame:
    """The file as all-String columns plus ``__row`` (the number used in error messages)."""
    name = path.name.lower()
    if name.endswith(".csv"):
        _check_utf8(path, path.read_bytes(), errors)
        df = pl.read_csv(path, infer_schema=False)
        return df.with_row_index(_ROW, offset=1)
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        records: list[dict[str, Any]] = []
        # Bytes, decoded line by line: a bad byte is then reported with its row.
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    errors.add(f"row {lineno}: not valid UTF-8; save the file as UTF-8")
                    continue
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    errors.add(f"row {lineno}: not valid JSON ({exc.msg})")
                    continue
                if not isinstance(obj, dict):
                    errors.add(f"row {lineno}: expected a JSON object, got {type(obj).__name__}")
                    continue
                rec: dict[str, Any] = {_ROW: lineno}
                for k, v in obj.items():
                    try:
                        rec[k] = _stringify(v)
                    except TypeError as exc:
                        errors.add(f"row {lineno}, column '{k}': nested value ({exc}) not allowed")
                records.append(rec)
        errors.raise_if_any()
        cols = list(dict.fromkeys(k for r in records for k in r))
        schema = {c: (pl.Int64 if c == _ROW else pl.String) for c in cols}
        return pl.DataFrame(records, schema=schema)
    if name.endswith(".parquet"):
        df = pl.read_parquet(path)
        nested = [c for c, t in df.schema.items() if t.is_nested()]
        if nested:
            errors.add(f"column(s) {nested}: nested values are not allowed")
            errors.raise_if_any()
        return df.cast(pl.String).with_row_index(_ROW, offset=1)
    raise StorageError(f"{path}: unsupported file type; use .csv, .jsonl (.gz) or .parquet")


def _rename(df: pl.DataFrame, mapping: Mapping[str, str | None] | None, errors: _Errors):
    mapping = dict(mapping or {})
    known = set(REQUIRED) | set(OPTIONAL)
    absent = [k for k in mapping if k not in df.columns]
    if absent:
        have = [c for c in df.columns if c != _ROW]
        errors.add(f"mapping names column(s) {absent} not in the file; file has {have}")
    bad_targets = {k: v for k, v in mapping.items() if v is not None and v not in known}
    if bad_targets:
        errors.add(
            f"mapping targets {bad_targets} are not importable columns; "
            f"allowed: {', '.join([*REQUIRED, *OPTIONAL])}"
        )
    errors.raise_if_any()
    df = df.drop([k for k, v in mapping.items() if v is None])
    renamed = [mapping.get(c, c) for c in df.columns]
    dup = sorted({c for c in renamed if renamed.count(c) > 1})
    if dup:
        errors.add(f"more than one column would be named {dup} after the mapping")
    unknown = [c for c in renamed if c != _ROW and c not in known]
    if unknown:
        errors.add(
            f"unknown column(s) {unknown}; rename them with --map YOURS=OURS or drop them with "
            f"--map YOURS= (Python: mapping={{'yours': 'ours' or None}}); importable: "
            f"{', '.join([*REQUIRED, *OPTIONAL])}"
        )
    missing = [c for c in REQUIRED if c not in renamed]
    if missing:
        errors.add(f"missing required column(s) {missing}")
    errors.raise_if_any()
    return df.rename({k: v for k, v in mapping.items() if v is not None and k in df.columns})


def _parse_numbers(df: pl.DataFrame, errors: _Errors) -> pl.DataFrame:
    c = pl.col
    out = []
    for col in _FLOAT_COLS:
        if col not in df.columns:
            continue
        txt = c(col).str.strip_chars()
        low = txt.str.to_lowercase()
        val = (
            pl.when(low == "true")
            .then(1.0)
            .when(low == "false")
            .then(0.0)
            .otherwise(txt.cast(pl.Float64, strict=False))
            if col == "score"
            else txt.cast(pl.Float64, strict=False)
        )
        out.append(val.alias(col))
        errors.rows(df, c(col).is_not_null() & val.is_null(), col, "not a number")
    for col in _INT_COLS:
        if col not in df.columns:
            continue
        f = c(col).str.strip_chars().cast(pl.Float64, strict=False)
        ok = f.is_finite() & (f == f.floor()) & (f.abs() < 2**31)
        errors.rows(df, c(col).is_not_null() & ~ok.fill_null(False), col, "not an integer")
        out.append(pl.when(ok).then(f).cast(pl.Int64).alias(col))
    if "parse_ok" in df.columns:
        low = c("parse_ok").str.strip_chars().str.to_lowercase()
        val = (
            pl.when(low.is_in(["true", "1", "yes"]))
            .then(True)
            .when(low.is_in(["false", "0", "no"]))
            .then(False)
        )
        errors.rows(df, c("parse_ok").is_not_null() & val.is_null(), "parse_ok", "not a boolean")
        out.append(val.alias("parse_ok"))
    return df.with_columns(out) if out else df


def _fill(
    df: pl.DataFrame,
    arg: str | None,
    col: str,
    errors: _Errors,
) -> pl.DataFrame:
    """Take ``col`` from the file or from the argument; when both are given they must agree."""
    if col in df.columns:
        if arg is not None:
            errors.rows(df, pl.col(col) != arg, col, f"differs from the argument {col}={arg!r}")
        return df
    if arg is None:
        errors.add(f"no '{col}' column and no {col}= argument: give one of them")
        return df
    return df.with_columns(pl.lit(arg, pl.String).alias(col))


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_values(df: pl.DataFrame, errors: _Errors, prices: Mapping[str, Any] | None) -> None:
    """Row checks on the columns as given (before defaults are filled in)."""
    c = pl.col
    for col in ("query_id", "model", "score", "dataset", "split"):
        errors.rows(df, c(col).is_null() | (c(col).cast(pl.String) == ""), col, "value missing")
    for col in ("dataset", "model"):
        bad = c(col).is_not_null() & ~c(col).str.contains(_NAME_RE.pattern)
        errors.rows(
            df,
            bad,
            col,
            f"not usable as a name (letters, digits, '.', '_', '-'; it becomes a directory): "
            f"rename it with --rename-values {col}:OLD=NEW or let --slug-names make one",
        )
    errors.rows(df, ~c("split").is_in(list(SPLITS)), "split", f"must be one of {list(SPLITS)}")
    errors.rows(df, ~c("score").is_finite(), "score", "must be finite")
    out_of_range = c("score").is_finite() & ((c("score") < 0) | (c("score") > 1))
    errors.rows(df, out_of_range, "score", "must be in [0, 1]")
    for col in ("decode_id", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s"):
        if col in df.columns:
            errors.rows(df, c(col) < 0, col, "must be >= 0")
    for col in ("cost_usd", "latency_s"):
        if col in df.columns:
            errors.rows(df, ~c(col).is_finite(), col, "must be finite")
    if "rewrite_id" in df.columns:
        errors.rows(df, c("rewrite_id") < -1, "rewrite_id", "must be >= -1 (-1 = original)")
    # Columns that decide a key or a cost may not be half filled; neutral ones get defaults.
    strict = ["rewrite_id", "decode_id", "view", "cost_usd"]
    has_tokens = "prompt_tokens" in df.columns or "completion_tokens" in df.columns
    if "cost_usd" not in df.columns:
        strict += ["prompt_tokens", "completion_tokens"]
        if has_tokens and prices is None:
            errors.add(
                "token counts without cost_usd: take the prices from a config's pool with "
                "--config (Python: prices={model: (usd_per_1m_in, usd_per_1m_out)}), add a "
                "cost_usd column, or drop the token columns with --map prompt_tokens= "
                "--map completion_tokens= (cost-blind data)"
            )
        elif has_tokens:
            no_price = ~c("model").is_in(list(prices or {}))
            errors.rows(df, no_price, "model", "no entry for this model in prices")
    for col in strict:
        if col in df.columns:
            errors.rows(df, c(col).is_null(), col, "value missing (the column is present)")


def _complete(df: pl.DataFrame, prices: Mapping[str, tuple[float, float]] | None) -> pl.DataFrame:
    """Fill the optional columns with their documented defaults."""
    c = pl.col
    defaults: dict[str, pl.Expr] = {
        "rewrite_id": pl.lit(-1, pl.Int64),
        "prompt_tokens": pl.lit(0, pl.Int64),
        "completion_tokens": pl.lit(0, pl.Int64),
        "latency_s": pl.lit(0.0),
        "response": pl.lit(None, pl.String),
        "parsed": pl.lit(None, pl.String),
        "parse_ok": pl.lit(True),
    }
    has_tokens = "prompt_tokens" in df.columns or "completion_tokens" in df.columns
    df = df.with_columns(
        (c(k).fill_null(v) if k in df.columns else v).alias(k) for k, v in defaults.items()
    )
    if "cost_usd" not in df.columns:
        cost: pl.Expr = pl.lit(0.0)
        if has_tokens and prices is not None:
            p_in = c("model").replace_strict({m: p[0] for m, p in prices.items()}, default=None)
            p_out = c("model").replace_strict({m: p[1] for m, p in prices.items()}, default=None)
            cost = (c("prompt_tokens") * p_in + c("completion_tokens") * p_out) / 1e6
        df = df.with_columns(cost.cast(pl.Float64).alias("cost_usd"))
    if "decode_id" not in df.columns:
        # Decode-only data: the n-th row of a (query, model, rewrite) in the file is decode n.
        group = ["dataset", "split", "query_id", "model", "rewrite_id"]
        df = df.with_columns(pl.int_range(pl.len()).over(group).cast(pl.Int64).alias("decode_id"))
    if "view" not in df.columns:
        view = (
            pl.when(c("split") == "train")
            .then(pl.lit("train"))
            .when(c("rewrite_id") == -1)
            .then(pl.lit("test_decode"))
            .otherwise(pl.lit("test_rewrite"))
        )
        df = df.with_columns(view.alias("view"))
    prompt_sha = pl.lit("")
    if "prompt" in df.columns:
        hashes = [hashlib.sha256(t.encode()).hexdigest() if t else "" for t in df["prompt"]]
        prompt_sha = pl.lit(pl.Series(hashes, dtype=pl.String))
    return df.with_columns(prompt_sha.alias("prompt_sha256"))


def _check_keys(df: pl.DataFrame, errors: _Errors) -> None:
    """Checks that need the completed rows: view consistency and duplicate keys."""
    c = pl.col
    valid_view = c("view").is_in(list(VIEWS))
    errors.rows(df, ~valid_view, "view", f"must be one of {list(VIEWS)}")
    errors.rows(
        df,
        valid_view & ((c("view") == "train") != (c("split") == "train")),
        "view",
        "view 'train' goes with split 'train', test views with split 'test'",
    )
    errors.rows(
        df,
        (c("view") == "test_decode") & (c("rewrite_id") != -1),
        "view",
        "view 'test_decode' needs rewrite_id -1",
    )
    errors.rows(
        df,
        (c("view") == "test_rewrite") & (c("rewrite_id") < 0),
        "view",
        "view 'test_rewrite' needs rewrite_id >= 0",
    )
    key = ["dataset", "split", "query_id", "model", "rewrite_id", "decode_id"]
    dup = df.filter(pl.struct(key).is_duplicated())
    for grp in dup.group_by(key, maintain_order=True).agg(c(_ROW)).head(5).iter_rows(named=True):
        desc = ", ".join(f"{k}={grp[k]!r}" for k in key)
        errors.add(f"rows {', '.join(map(str, grp[_ROW]))} have the same key ({desc})")


def _write_routed(root: str | Path, obs: pl.DataFrame) -> tuple[list, WriteCounts]:
    """Write each partition's rows: keys already stored go back to their shard, others to 0."""
    total = WriteCounts()
    parts: list[tuple[str, str, str]] = []
    file_key = ["query_id", "rewrite_id", "decode_id"]
    for (d, s, m), sub in obs.group_by(["dataset", "split", "model"], maintain_order=True):
        parts.append((str(d), str(s), str(m)))
        where = key_shards(root, str(d), str(s), str(m))
        routed = sub.join(where, on=file_key, how="left", maintain_order="left")
        routed = routed.with_columns(pl.col("shard").fill_null(0))
        for (shard,), rows in routed.group_by(["shard"], maintain_order=True):
            total += write_observations(root, rows.drop("shard"), shard=int(shard))
    return parts, total


def slug(value: str) -> str:
    """A path-safe name for ``value``: each run of characters other than letters, digits, ``.``,
    ``_`` and ``-`` becomes ``-``; leading ``.``, ``_`` and ``-`` are dropped (hive readers skip
    such names). ``gpt-4o[json-schema]`` → ``gpt-4o-json-schema``."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-").lstrip("._-")
    return out or "x"


def _rename_values(
    df: pl.DataFrame,
    rename: Mapping[str, Mapping[str, str]] | None,
    slug_names: bool,
    errors: _Errors,
) -> tuple[pl.DataFrame, dict[str, dict[str, str]]]:
    """Apply ``rename`` ({column: {given value: new value}}) and, with ``slug_names``, a slug to
    every other value that is not path-safe, in the dataset and model columns; returns the frame
    and the renames applied."""
    rename = dict(rename or {})
    bad_cols = sorted(set(rename) - {"dataset", "model"})
    if bad_cols:
        errors.add(f"--rename-values applies to the dataset and model columns, not {bad_cols}")
    applied: dict[str, dict[str, str]] = {}
    for col in ("dataset", "model"):
        if col not in df.columns:
            continue
        values = set(df[col].drop_nulls().unique().to_list())
        mapping = dict(rename.get(col, {}))
        absent = sorted(set(mapping) - values)
        if absent:
            errors.add(f"--rename-values {col}: value(s) {absent} do not occur in the file")
        bad = sorted(v for v in mapping.values() if not _NAME_RE.match(v))
        if bad:
            errors.add(f"--rename-values {col}: new name(s) {bad} are not path-safe either")
        if slug_names:
            for v in sorted(values - set(mapping)):
                if not _NAME_RE.match(v):
                    mapping[v] = slug(v)
        final = {v: mapping.get(v, v) for v in values}
        by_name: dict[str, list[str]] = {}
        for original, name in final.items():
            by_name.setdefault(name, []).append(original)
        clashes = {n: sorted(o) for n, o in by_name.items() if len(o) > 1}
        if clashes:
            errors.add(f"{col}: different values would get the same name: {clashes}")
        mapping = {k: v for k, v in mapping.items() if k in values and k != v}
        if mapping:
            applied[col] = mapping
            df = df.with_columns(pl.col(col).replace(mapping))
    return df, applied


def _seeded_split(df: pl.DataFrame, test_fraction: float, seed: int) -> pl.DataFrame:
    """A ``split`` column: each (dataset, query) goes to test when a uniform number drawn from
    sha256(seed, dataset, query_id) is below ``test_fraction`` (independent of row order)."""
    pairs = df.select("dataset", "query_id").unique()
    draws = [
        int.from_bytes(hashlib.sha256(f"{seed}:{d}:{q}".encode()).digest()[:8], "big") / 2**64
        for d, q in pairs.iter_rows()
    ]
    split = pairs.with_columns(
        split=pl.Series(["test" if u < test_fraction else "train" for u in draws], dtype=pl.String)
    )
    return df.join(split, on=["dataset", "query_id"], how="left", maintain_order="left")


def _queries(
    df: pl.DataFrame, errors: _Errors, task_types: Collection[str] | None
) -> dict[str, pl.DataFrame]:
    """One queries frame per dataset (columns of ``dars.storage.queries``) when the file has a
    ``question`` column; a query must have one text (and context, gold, task type, split) in
    every row that names it."""
    c = pl.col
    given = [col for col in QUERY_TEXT_COLS if col in df.columns]
    if "question" not in given:
        if given:
            errors.add(f"column(s) {given} need a question column (the text of each query)")
        return {}
    errors.rows(df, c("question").is_null() | (c("question") == ""), "question", "value missing")
    if "task_type" in df.columns and task_types is not None:
        valid = sorted(task_types)
        errors.rows(
            df,
            c("task_type").is_not_null() & ~c("task_type").is_in(valid),
            "task_type",
            f"unknown task type; available: {', '.join(valid)}",
        )
    cols = ["dataset", "query_id", "split", *QUERY_TEXT_COLS]
    q = df.with_columns(
        pl.lit(None, pl.String).alias(col) for col in QUERY_TEXT_COLS if col not in df.columns
    ).select(*cols, _ROW)
    per_query = q.group_by("dataset", "query_id").agg(
        *(c(col).n_unique().alias(col) for col in cols[2:]), c(_ROW).min()
    )
    for col in cols[2:]:
        for r in per_query.filter(c(col) > 1).sort(_ROW).head(3).iter_rows(named=True):
            errors.add(
                f"query {r['query_id']!r} of dataset {r['dataset']!r} has {r[col]} different "
                f"values in column '{col}' (first row {r[_ROW]}): a query has one {col}"
            )
    firsts = q.unique(["dataset", "query_id"], keep="first", maintain_order=True).drop(_ROW)
    return {str(d): part for (d,), part in firsts.group_by(["dataset"], maintain_order=True)}


def _summaries(obs: pl.DataFrame, queries: Mapping[str, pl.DataFrame]) -> dict[str, dict]:
    """Per dataset: models, queries per split, decodes per (query, model, formulation)."""
    out: dict[str, dict[str, Any]] = {}
    for (d,), part in obs.group_by(["dataset"], maintain_order=True):
        per_pair = part.group_by("query_id", "model", "rewrite_id").len()
        splits = part.group_by("split").agg(pl.col("query_id").n_unique())
        out[str(d)] = {
            "models": sorted(part["model"].unique().to_list()),
            "queries": {s: int(n) for s, n in splits.sort("split").iter_rows()},
            "decodes_per_pair": [int(per_pair["len"].min()), int(per_pair["len"].max())],
            "queries_stored": str(d) in queries,
        }
    return out


def import_generations(
    path: str | Path,
    root: str | Path,
    mapping: Mapping[str, str | None] | None = None,
    *,
    dataset: str | None = None,
    split: str | None = None,
    run_id: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    rename_values: Mapping[str, Mapping[str, str]] | None = None,
    slug_names: bool = False,
    test_fraction: float | None = None,
    seed: int = 0,
    task_types: Collection[str] | None = None,
) -> ImportResult:
    """Validate a user's table of scored generations and merge it into the observation store
    (and, with a ``question`` column, the dataset's queries into the query store).

    ``mapping``: {file column: our column or None}. ``dataset`` / ``split``: values for every
    row when the file has no such column. ``prices``: {model: (USD per 1M input tokens, USD per
    1M output tokens)}, needed only when the file has token counts but no ``cost_usd``.
    ``rename_values`` / ``slug_names``: new names for dataset and model values (see the module
    docstring). ``test_fraction`` / ``seed``: a seeded split when the file has no split column
    and no ``split`` is given. ``task_types``: the valid values of a ``task_type`` column.
    See the module docstring for columns and defaults. Raises :class:`StorageError` (nothing
    written) if any row is bad.
    """
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: file not found")
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise StorageError(f"test fraction must be in (0, 1), got {test_fraction}")
    errors = _Errors(path)
    try:
        raw = _read(path, errors)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        # Polars' messages span lines (with hints); the error is one line.
        raise StorageError(f"{path}: cannot read the file: {' '.join(str(exc).split())}") from None
    if raw.height == 0:
        raise StorageError(f"{path}: no rows")
    df = _rename(raw, mapping, errors)
    df = _parse_numbers(df, errors)
    df = _fill(df, dataset, "dataset", errors)
    errors.raise_if_any()
    df, renamed = _rename_values(df, rename_values, slug_names, errors)
    if "split" not in df.columns and split is None and test_fraction is not None:
        df = _seeded_split(df, test_fraction, seed)
    elif test_fraction is not None:
        errors.add("--test-fraction applies only when there is no split column and no --split")
    df = _fill(df, split, "split", errors)
    errors.raise_if_any()
    _check_values(df, errors, prices)
    errors.raise_if_any()
    df = _complete(df, prices)
    _check_keys(df, errors)
    queries = _queries(df, errors, task_types)
    for d, frame in queries.items():
        for problem in query_conflicts(root, d, frame):
            errors.add(problem)
    errors.raise_if_any()

    run_id = run_id or f"import-{_file_sha(path)[:12]}"
    obs = df.with_columns(
        pl.col("rewrite_id", "decode_id").cast(pl.Int32),
        pl.lit("ok").alias("status"),
        pl.lit(None, pl.String).alias("error"),
        pl.lit(1, pl.Int32).alias("attempts"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(dt.datetime.now(dt.UTC)).dt.cast_time_unit("us").alias("created_at"),
    ).select([col.name for col in OBSERVATION_COLUMNS])
    # Queries first: a store with queries but no observations yet is harmless (a rerun of the
    # import fills the observations); observations whose queries are missing could not be
    # trained on.
    for d, frame in queries.items():
        merge_queries(root, d, frame)
    parts, counts = _write_routed(root, obs)
    datasets = _summaries(obs, queries)
    manifest = RunLayout(root).import_manifest(run_id)
    atomic_write_text(
        json.dumps(
            {
                "run_id": run_id,
                "file": str(path.resolve()),
                "sha256": _file_sha(path),
                "imported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "rows": obs.height,
                "mapping": dict(mapping or {}),
                "renamed_values": renamed,
                "test_fraction": test_fraction,
                "seed": seed if test_fraction is not None else None,
                "datasets": datasets,
                "written_ok": counts.written_ok,
                "already_stored": counts.skipped_ok,
            },
            indent=1,
        ),
        manifest,
    )
    return ImportResult(path, obs.height, run_id, tuple(parts), counts, renamed, datasets, manifest)
