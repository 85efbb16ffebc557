"""Every supervision table of one dataset from its observation frame (pure; no I/O).

:func:`supervision_tables` composes the functions of this package into the tables the supervise
stage (:mod:`dars.tasks.supervise`) writes, one file each under
``<root>/supervision/dataset=<d>/<name>.parquet``; :func:`summarise` is the compact summary.

Input: the experiment's **train** observations with ``status == "ok"``, view ``train``, of the
pool models, inside the protocol's grid (rewrites ``0..K-1`` plus the original -1 when
``train_include_original``, decodes ``0..M-1``). A query that lacks an ok observation for some
pool model is dropped from every table (counted as ``n_queries_dropped`` in the summary), so all
tables of a dataset cover the same queries. Cost is min-max normalised once over that frame, so
every table measures cost on the same scale.

Tables (one file each; rows are sorted, so a rerun on the same store writes identical files):

``dars``
    Full DARS aggregate, one row per (dataset, query_id, model): ``n_obs, n_rewrites, q_mean,
    q_std, c_mean, u`` (:data:`~dars.supervision.core.AGGREGATE_COLUMNS`).
``ablations``
    Every Table-2 ablation of :data:`~dars.supervision.ablations.ABLATIONS` (full_dars
    included, so the table is complete on its own) in one table: ``supervision`` (str) then the
    aggregate columns; one row per (supervision, dataset, query_id, model), supervisions in
    Table-2 order. One table rather than one file per ablation so that adding an ablation adds
    rows, not files.
``single_shot_draws`` / ``single_shot_labels``
    :func:`~dars.supervision.single_shot.single_shot` with ``S = experiment.single_shot_draws``
    and ``seed = experiment.seed``: one row per (draw, dataset, query_id, model) with the drawn
    ``rewrite_id, decode_id, q, c, u``; one row per (draw, dataset, query_id) with its hard label.
``labels``
    DARS labels from ``dars``, one row per (dataset, query_id, model) in pool order:
    ``model_index``, ``u``, ``rank`` (listwise, 1 = best), ``prob`` (soft label, softmax of
    u / τ), ``is_label`` (hard label: ``rank == 1``) and ``n_tied`` (models tied with the
    winner on u). Pairwise preferences follow from it: a is preferred to b iff
    ``rank_a < rank_b``, with margin ``u_a - u_b`` (what
    :func:`~dars.supervision.labels.pairwise_preferences` returns).
``subgrid``
    Full DARS on seeded k×m sub-grids (:func:`~dars.supervision.ablations.subgrid_dars`) for the
    sample-efficiency protocols of :func:`subgrid_protocols`: ``k, m`` (int32) then the
    aggregate columns; one row per (k, m, dataset, query_id, model). The same seeded slots are
    kept for every model of a query, so a cell whose kept slots all failed is absent.
``diagnostics``
    Figure-2 diagnostics under both definitions of the single-shot metrics
    (:func:`~dars.supervision.diagnostics.diagnostics_table`): one row per metric, and per
    definition (``paper``: the slots shared by all models against argmax μ − λc̄; ``draws``:
    the S single-shot draws against the DARS label) for winner flip and single-vs-DA
    disagreement, with ``value, ci_low, ci_high`` (percentile bootstrap over queries), counts
    and ``is_default`` marking the configured definition's rows
    (:data:`~dars.supervision.diagnostics.DIAGNOSTICS_SCHEMA`).
``recovery`` (simulated pools only)
    Label recovery (:func:`~dars.supervision.recovery.recovery_table`) of single-shot, every
    ablation and every sub-grid protocol against the simulator's ground truth (see
    :func:`dars.sim.simulated_truth`). Written only when every pool model is ``dars-sim/…``;
    removed otherwise, so a stale file from an earlier simulated run never survives.
``summary``
    The compact per-dataset summary returned to the caller (see :func:`summarise`); written
    last, so its presence means the dataset's other tables are complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from dars.supervision.ablations import ABLATIONS, get_ablation, subgrid_dars, subgrid_ranks
from dars.supervision.core import (
    CELL_KEY,
    QUERY_KEY,
    ObservationsLike,
    PreparedObservations,
    prepare_once,
)
from dars.supervision.diagnostics import DEFAULT_DEFINITION, diagnostics_table, draws_metrics
from dars.supervision.labels import hard_labels, listwise_ranking, soft_labels
from dars.supervision.recovery import recovery_table
from dars.supervision.single_shot import SingleShotChunk, single_shot_plan

__all__ = [
    "SUMMARY_COLUMNS",
    "TABLES",
    "complete_queries",
    "dars_labels",
    "grid_size",
    "incomplete_queries",
    "subgrid_protocols",
    "summarise",
    "supervision_stream",
    "supervision_tables",
    "train_grid",
]

#: Table names in the order they are written (``recovery`` only for simulated pools).
TABLES: tuple[str, ...] = (
    "dars",
    "ablations",
    "single_shot_draws",
    "single_shot_labels",
    "labels",
    "subgrid",
    "diagnostics",
    "recovery",
    "summary",
)
SUMMARY_COLUMNS: tuple[str, ...] = ("dataset", "metric", "value", "ci_low", "ci_high")


def subgrid_protocols(k_max: int, m_max: int) -> list[tuple[int, int]]:
    """The k×m sample-efficiency protocols for a K×M grid, sorted and without duplicates.

    (1, 1), (1, M), (K, 1), (2, 2), (3, 3) and (K, M), keeping only those with k ≤ K and
    m ≤ M: the corners of the grid plus two balanced points, enough to draw the K-vs-M curves
    while keeping the stage small.
    """
    if k_max < 1 or m_max < 1:
        raise ValueError(f"k_max and m_max must be >= 1, got {k_max}, {m_max}")
    wanted = [(1, 1), (1, m_max), (k_max, 1), (2, 2), (3, 3), (k_max, m_max)]
    return sorted({(k, m) for k, m in wanted if k <= k_max and m <= m_max})


def grid_size(obs: pl.DataFrame | PreparedObservations) -> tuple[int, int]:
    """(K, M) actually observed: the most formulations of any query and the most decodes of any
    (query, formulation), over ok rows."""
    if isinstance(obs, PreparedObservations):  # integer query ids: no string hashing
        frame = obs.frame
        k = frame.group_by("_q").agg(pl.col("rewrite_id").n_unique())["rewrite_id"].max()
        m = (
            frame.group_by("_q", "rewrite_id")
            .agg(pl.col("decode_id").n_unique())["decode_id"]
            .max()
        )
        return int(k or 0), int(m or 0)  # type: ignore[arg-type]
    ok = obs.filter(pl.col("status") == "ok") if "status" in obs.columns else obs
    k = ok.group_by(QUERY_KEY).agg(pl.col("rewrite_id").n_unique())["rewrite_id"].max()
    m = (
        ok.group_by([*QUERY_KEY, "rewrite_id"])
        .agg(pl.col("decode_id").n_unique())["decode_id"]
        .max()
    )
    return int(k or 0), int(m or 0)  # type: ignore[arg-type]


def incomplete_queries(prep: PreparedObservations, models: Sequence[str]) -> int:
    """How many queries of a prepared frame lack an observation of some pool model (what
    :func:`complete_queries` would drop), counted on the integer codes."""
    frame = prep.frame
    in_pool = frame.filter(pl.col("model").cast(pl.String).is_in(list(models)))
    per_query = in_pool.group_by("_q").agg(pl.col("model").n_unique())
    n_queries = frame["_q"].n_unique()
    return n_queries - per_query.filter(pl.col("model") == len(models)).height


def complete_queries(obs: pl.DataFrame, models: Sequence[str]) -> tuple[pl.DataFrame, int]:
    """Keep the queries with an ok observation for every pool model.

    Returns (the ok rows of those queries, number of queries dropped). Supervision needs every
    (query, model) cell, so a query with a model whose every generation failed is unusable.
    """
    ok = obs.filter(pl.col("status") == "ok") if "status" in obs.columns else obs
    per_query = ok.group_by(QUERY_KEY).agg(
        n=pl.col("model").filter(pl.col("model").is_in(list(models))).n_unique()
    )
    keep = per_query.filter(pl.col("n") == len(models)).select(QUERY_KEY)
    n_all = obs.select(QUERY_KEY).unique().height
    return ok.join(keep, on=list(QUERY_KEY), how="semi"), n_all - keep.height


def dars_labels(agg: pl.DataFrame, models: Sequence[str]) -> pl.DataFrame:
    """The ``labels`` table from a DARS aggregate (see the module docstring): one row per
    (dataset, query_id, model) in pool order with model_index, u, rank, prob, is_label, n_tied."""
    ranks = listwise_ranking(agg, models)
    probs = soft_labels(agg, models).select(*CELL_KEY, "prob")
    tied = hard_labels(agg, models).select(*QUERY_KEY, "n_tied")
    return (
        ranks.join(probs, on=list(CELL_KEY), how="left")
        .join(tied, on=list(QUERY_KEY), how="left")
        .with_columns(is_label=pl.col("rank") == 1)
        .select(*CELL_KEY, "model_index", "u", "rank", "prob", "is_label", "n_tied")
        .sort([*QUERY_KEY, "model_index"])
    )


def _tagged(frames: Sequence[tuple[dict[str, pl.Expr], pl.DataFrame]]) -> pl.DataFrame:
    return pl.concat(
        [f.select(*(e.alias(n) for n, e in tags.items()), pl.all()) for tags, f in frames]
    )


def supervision_tables(
    obs: ObservationsLike,
    models: Sequence[str],
    *,
    lam: float,
    beta: float,
    draws: int,
    seed: int,
    protocols: Sequence[tuple[int, int]],
    truth: pl.DataFrame | None = None,
    n_boot: int = 1000,
    definition: str = DEFAULT_DEFINITION,
) -> dict[str, pl.DataFrame]:
    """Every supervision table of one observation frame (pure; no I/O).

    ``obs``: ok train observations in which every query has every pool model (see
    :func:`complete_queries`), raw or prepared (:func:`~dars.supervision.core.prepare_once`).
    ``truth``: one row per (dataset, query_id, model) with ``p_true`` and ``c_true`` (on the
    ``c_norm`` scale of ``obs``); when given, the ``recovery`` table is added. ``definition``:
    the default definition of the single-shot diagnostics (both are in the ``diagnostics``
    table; the summary shows the default). Returns table name → frame for every name of
    :data:`TABLES` except ``summary`` (and ``recovery`` without truth); the tables are described
    in the module docstring. The same tables as :func:`supervision_stream`, held in memory.
    """
    tables: dict[str, pl.DataFrame] = {}
    for name, value in supervision_stream(
        obs, models, lam=lam, beta=beta, draws=draws, seed=seed, protocols=protocols,
        truth=truth, n_boot=n_boot, definition=definition,
    ):  # fmt: skip
        if name == SINGLE_SHOT:
            chunks = list(value)
            tables["single_shot_draws"] = pl.concat([c.draws for c in chunks])
            tables["single_shot_labels"] = pl.concat([c.labels for c in chunks])
        else:
            tables[name] = value
    return tables


#: The name :func:`supervision_stream` gives the single-shot tables' chunks.
SINGLE_SHOT = "single_shot"
#: Draws per chunk of the streamed single-shot tables.
DRAWS_PER_CHUNK = 10


def supervision_stream(
    obs: ObservationsLike,
    models: Sequence[str],
    *,
    lam: float,
    beta: float,
    draws: int,
    seed: int,
    protocols: Sequence[tuple[int, int]],
    truth: pl.DataFrame | None = None,
    n_boot: int = 1000,
    definition: str = DEFAULT_DEFINITION,
    draws_per_chunk: int = DRAWS_PER_CHUNK,
) -> Iterator[tuple[str, Any]]:
    """The tables of :func:`supervision_tables`, one at a time, in :data:`TABLES` order, for a
    caller that writes each and frees it (pure; no I/O).

    Yields ``(name, frame)``, except for the two single-shot tables, which come together as
    ``(SINGLE_SHOT, chunks)``: an iterator of
    :class:`~dars.supervision.single_shot.SingleShotChunk` (``draws_per_chunk`` draws each: rows
    of ``single_shot_draws`` and of ``single_shot_labels``), so the S draws are never held at
    once. The caller must exhaust ``chunks`` before asking for the next table: the ``draws``
    diagnostics are counted while the chunks go by. ``obs`` is prepared once
    (:func:`~dars.supervision.core.prepare_once`) and shared by every table.
    """
    names = list(models)
    prep = prepare_once(obs)
    agg = get_ablation("full_dars")(prep, lam=lam, beta=beta)
    yield "dars", agg
    yield (
        "ablations",
        _tagged(
            [
                ({"supervision": pl.lit(name, pl.String)}, fn(prep, lam=lam, beta=beta))
                for name, fn in ABLATIONS.items()
            ]
        ),
    )
    plan = single_shot_plan(prep, names, draws=draws, seed=seed, lam=lam)
    query_keys = plan.query_keys()
    # The draws definition's DA label: the DARS hard label (β included), query order as above.
    da = hard_labels(agg, names)
    if not da.select(QUERY_KEY).equals(query_keys):
        raise AssertionError("single-shot queries and DARS labels are not in the same order")
    da_index = da["label_index"].to_numpy()
    first = np.full(plan.n_queries, -1, dtype=np.int64)
    flipped = np.zeros(plan.n_queries, dtype=bool)
    disagree = np.zeros(plan.n_queries, dtype=np.int64)
    seen = 0

    def chunks() -> Iterator[SingleShotChunk]:
        nonlocal seen
        for chunk in plan.chunks(draws_per_chunk):
            li = chunk.label_index
            if seen == 0:
                first[:] = li[0]
            flipped[:] |= (li != first[None, :]).any(axis=0)
            disagree[:] += (li != da_index[None, :]).sum(axis=0)
            seen += li.shape[0]
            yield chunk

    yield SINGLE_SHOT, chunks()
    if seen != draws:
        raise RuntimeError("supervision_stream: the single-shot chunks were not all consumed")
    yield "labels", dars_labels(agg, names)
    ranks = subgrid_ranks(prep.frame, seed)  # one seeded drawing shared by every (k, m)
    yield (
        "subgrid",
        _tagged(
            [
                (
                    {"k": pl.lit(k, pl.Int32), "m": pl.lit(m, pl.Int32)},
                    subgrid_dars(prep, k=k, m=m, seed=seed, lam=lam, beta=beta, ranks=ranks),
                )
                for k, m in protocols
            ]
        ),
    )
    boot = {"n_boot": n_boot, "seed": seed}
    draws_rows = draws_metrics(query_keys, draws, flipped, disagree, **boot)
    yield (
        "diagnostics",
        diagnostics_table(
            prep,
            names,
            default=definition,
            lam=lam,
            beta=beta,
            draws=draws,
            computed={"draws": draws_rows},
            **boot,
        ),  # fmt: skip
    )
    if truth is not None:
        yield (
            "recovery",
            recovery_table(
                prep,
                truth,
                names,
                lam=lam,
                beta=beta,
                draws=draws,
                seed=seed,
                protocols=protocols,
                n_boot=n_boot,
                # A sub-grid can miss a cell whose chosen slots all failed; such a query is left
                # out of that protocol's recovery (its n_queries says how many remain).
                missing="drop",
            ),
        )


def summarise(
    dataset: str,
    tables: dict[str, pl.DataFrame],
    *,
    n_observations: int,
    n_queries_dropped: int,
) -> pl.DataFrame:
    """Compact summary of one dataset: one row per metric, columns :data:`SUMMARY_COLUMNS`.

    Rows, in order: ``n_queries``, ``n_models``, ``n_observations``, ``n_queries_dropped``
    (counts; no CI), the diagnostics metrics under the default definition (value and
    bootstrap CI; the ``diagnostics`` table holds the other definition too), then, when the
    ``recovery`` table exists, ``recovery:<supervision>`` for single-shot and each ablation
    (share of queries whose label is a truly best model, with CI; sub-grid protocols are in the
    ``recovery`` table only).
    """
    agg = tables["dars"]
    counts = {
        "n_queries": agg.select(QUERY_KEY).unique().height,
        "n_models": agg["model"].n_unique(),
        "n_observations": n_observations,
        "n_queries_dropped": n_queries_dropped,
    }
    schema = {
        "dataset": pl.String,
        "metric": pl.String,
        "value": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
    }
    parts = [
        pl.DataFrame(
            [(dataset, k, float(v), None, None) for k, v in counts.items()],
            schema=schema,
            orient="row",
        ),
        tables["diagnostics"].filter(pl.col("is_default")).select(SUMMARY_COLUMNS),
    ]
    if "recovery" in tables:
        parts.append(
            tables["recovery"]
            .filter(pl.col("k").is_null())
            .select(
                "dataset",
                metric=pl.lit("recovery:") + pl.col("supervision"),
                value=pl.col("recovery"),
                ci_low="ci_low",
                ci_high="ci_high",
            )
        )
    return pl.concat(parts).cast(schema)  # type: ignore[arg-type]


def train_grid(
    train_rewrites: int, train_decodes: int, include_original: bool = False
) -> tuple[list[int], int]:
    """(formulation ids, number of decodes) of a train protocol: rewrites ``0..K-1`` (plus the
    original, -1, first when ``include_original``) × decodes ``0..M-1``."""
    rewrites = ([-1] if include_original else []) + list(range(train_rewrites))
    return rewrites, train_decodes
