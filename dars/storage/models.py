"""The model store: fitted routers and their test routes, per (dataset, family, supervision).

Under ``RunLayout(root).model_dir(dataset, family, supervision)``:

* the fitted router (``router.json`` + ``state.npz``/``state.pt``, written by ``Router.save``);
* ``routes.parquet`` — where the router sends every test query: one row per (draw, query_id)
  with ``draw`` (int32; the single-shot draw, 0 for every other supervision), ``query_id``,
  ``model`` (pool name) and ``model_index`` (int32, index into the pool order); rows ordered by
  draw, then test split order (:data:`ROUTES_SCHEMA`);
* ``lam_routes.parquet`` (single_shot and dars only) — the same at every λ of the Pareto sweep:
  ``lam`` (float64) then the routes columns, one row per (lam, draw, query_id)
  (:data:`LAM_ROUTES_SCHEMA`).

``routes.parquet`` is written last and removed first by :func:`write_trained`, so its presence
means the directory is complete: a half-written rerun never pairs a new router with stale routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from dars.storage.layout import RunLayout
from dars.storage.store import atomic_write_table

__all__ = [
    "LAM_ROUTES_SCHEMA",
    "ROUTES_SCHEMA",
    "complete_routers",
    "read_lam_routes",
    "read_routes",
    "routes_exist",
    "write_trained",
]

ROUTES_SCHEMA = pa.schema(
    [
        pa.field("draw", pa.int32(), nullable=False),
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("model_index", pa.int32(), nullable=False),
    ]
)
LAM_ROUTES_SCHEMA = pa.schema([pa.field("lam", pa.float64(), nullable=False), *ROUTES_SCHEMA])


def _arrow(frame: pl.DataFrame, schema: pa.Schema, what: str) -> pa.Table:
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; expected {schema.names}")
    table = frame.select(schema.names).to_arrow(compat_level=pl.CompatLevel.oldest())
    return table.cast(schema)


def write_trained(
    root: str | Path,
    dataset: str,
    family: str,
    supervision: str,
    router: Any,
    routes: pl.DataFrame,
    lam_routes: pl.DataFrame | None = None,
) -> Path:
    """Store one trained (dataset, family, supervision): the router, its λ routes (when given)
    and its routes, in that order after removing the old routes files; returns the directory."""
    layout = RunLayout(root)
    out_dir = layout.model_dir(dataset, family, supervision)
    routes_path = layout.routes_file(dataset, family, supervision)
    lam_path = layout.lam_routes_file(dataset, family, supervision)
    table = _arrow(routes, ROUTES_SCHEMA, "routes")
    lam_table = None if lam_routes is None else _arrow(lam_routes, LAM_ROUTES_SCHEMA, "λ routes")
    routes_path.unlink(missing_ok=True)
    lam_path.unlink(missing_ok=True)
    router.save(out_dir)
    if lam_table is not None:
        atomic_write_table(lam_table, lam_path)
    atomic_write_table(table, routes_path)
    return out_dir


def routes_exist(root: str | Path, dataset: str, family: str, supervision: str) -> bool:
    """Whether (dataset, family, supervision) was trained to the end (its routes are stored)."""
    return RunLayout(root).routes_file(dataset, family, supervision).is_file()


def complete_routers(root: str | Path, dataset: str) -> list[tuple[str, str]]:
    """(family, supervision) pairs of ``dataset`` trained to the end, sorted; an interrupted
    training (no ``routes.parquet`` yet) is left out."""
    return [
        (f, s) for f, s in RunLayout(root).router_keys(dataset) if routes_exist(root, dataset, f, s)
    ]


def read_routes(root: str | Path, dataset: str, family: str, supervision: str) -> pl.DataFrame:
    """``routes.parquet`` of one trained router; FileNotFoundError naming the file and the
    ``dars train`` command when it is missing."""
    path = RunLayout(root).routes_file(dataset, family, supervision)
    if not path.is_file():
        raise FileNotFoundError(
            f"no routes for the {family}/{supervision} router of dataset {dataset!r} ({path} is "
            f"missing); train it with `dars train --family {family} --supervision {supervision}`"
        )
    return pl.read_parquet(path)


def read_lam_routes(
    root: str | Path, dataset: str, family: str, supervision: str
) -> pl.DataFrame | None:
    """``lam_routes.parquet`` of one trained router, or None when it was not written (a
    supervision outside the sweep, or a router trained before the train stage wrote λ routes)."""
    path = RunLayout(root).lam_routes_file(dataset, family, supervision)
    return pl.read_parquet(path) if path.is_file() else None
