"""The supervise stage: observation store → supervision tables, per dataset.

This is the I/O side of :mod:`dars.supervision`: it reads the observation store, calls the pure
functions, and writes the results with :mod:`dars.storage.supervision_store`
(``<root>/supervision/dataset=<d>/<name>.parquet``). :func:`supervision_tables` is the pure
composition; :func:`supervise_dataset` / :func:`supervise` add reading and writing.

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
``variants``
    Every ablation variant of :data:`~dars.supervision.ablations.VARIANTS` (full_dars included,
    so the table is complete on its own) in one table: ``variant`` (str) then the aggregate
    columns; one row per (variant, dataset, query_id, model), variants in Table-2 order. One
    table rather than one file per variant so that adding a variant adds rows, not files.
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
    Figure-2 diagnostics (:func:`~dars.supervision.diagnostics.diagnostics`, single-shot index =
    the S draws): one row per metric with ``value, ci_low, ci_high`` (percentile bootstrap over
    queries) and counts (:data:`~dars.supervision.diagnostics.METRIC_COLUMNS`).
``recovery`` (simulated pools only)
    Label recovery (:func:`~dars.supervision.recovery.recovery_table`) of single-shot, every
    variant and every sub-grid protocol against the simulator's ground truth (see
    :func:`simulated_truth`). Written only when every pool model is ``dars-sim/…``; removed
    otherwise, so a stale file from an earlier simulated run never survives.
``summary``
    The compact per-dataset summary returned to the caller (see :func:`summarise`); written
    last, so its presence means the dataset's other tables are complete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import polars as pl

from dars.storage import RunLayout, scan_observations
from dars.storage.supervision_store import remove_supervision, write_supervision
from dars.supervision.ablations import VARIANTS, get_variant, subgrid_dars
from dars.supervision.core import CELL_KEY, QUERY_KEY, cost_bounds
from dars.supervision.diagnostics import diagnostics
from dars.supervision.labels import hard_labels, listwise_ranking, soft_labels
from dars.supervision.recovery import recovery_table
from dars.supervision.single_shot import single_shot

if TYPE_CHECKING:
    from rich.table import Table

    from dars.config import Experiment
    from dars.llm.sim import SimWorld

SIM_PREFIX = "dars-sim/"
#: Table names in the order they are written (``recovery`` only for simulated pools).
TABLES: tuple[str, ...] = (
    "dars",
    "variants",
    "single_shot_draws",
    "single_shot_labels",
    "labels",
    "subgrid",
    "diagnostics",
    "recovery",
    "summary",
)
SUMMARY_COLUMNS: tuple[str, ...] = ("dataset", "metric", "value", "ci_low", "ci_high")
#: Paraphrase ids averaged into the simulated truth (see :func:`simulated_truth`).
TRUTH_REWRITES = 64
_OBS_COLUMNS = (
    "dataset",
    "split",
    "view",
    "query_id",
    "model",
    "rewrite_id",
    "decode_id",
    "score",
    "cost_usd",
    "status",
)


class DatasetSupervision(NamedTuple):
    """What :func:`supervise_dataset` did: the files written (table name → path, in
    :data:`TABLES` order) and the dataset's summary frame (:func:`summarise`)."""

    dataset: str
    files: dict[str, Path]
    summary: pl.DataFrame


# ------------------------------------------------------------------------------------------------
# pure parts
# ------------------------------------------------------------------------------------------------
def is_simulated(experiment: Experiment) -> bool:
    """True when every pool model is served by the simulated provider (``dars-sim/<id>``)."""
    return all(m.litellm_model.startswith(SIM_PREFIX) for m in experiment.pool.models)


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


def grid_size(obs: pl.DataFrame) -> tuple[int, int]:
    """(K, M) actually observed: the most formulations of any query and the most decodes of any
    (query, formulation), over ok rows."""
    ok = obs.filter(pl.col("status") == "ok") if "status" in obs.columns else obs
    k = ok.group_by(QUERY_KEY).agg(pl.col("rewrite_id").n_unique())["rewrite_id"].max()
    m = (
        ok.group_by([*QUERY_KEY, "rewrite_id"])
        .agg(pl.col("decode_id").n_unique())["decode_id"]
        .max()
    )
    return int(k or 0), int(m or 0)  # type: ignore[arg-type]


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
    obs: pl.DataFrame,
    models: Sequence[str],
    *,
    lam: float,
    beta: float,
    draws: int,
    seed: int,
    protocols: Sequence[tuple[int, int]],
    truth: pl.DataFrame | None = None,
    n_boot: int = 1000,
) -> dict[str, pl.DataFrame]:
    """Every supervision table of one observation frame (pure; no I/O).

    ``obs``: ok train observations in which every query has every pool model (see
    :func:`complete_queries`). ``truth``: one row per (dataset, query_id, model) with ``p_true``
    and ``c_true`` (on the ``c_norm`` scale of ``obs``); when given, the ``recovery`` table is
    added. Returns table name → frame for every name of :data:`TABLES` except ``summary``
    (and ``recovery`` without truth); the tables are described in the module docstring.
    """
    names = list(models)
    tables: dict[str, pl.DataFrame] = {}
    agg = get_variant("full_dars")(obs, lam=lam, beta=beta)
    tables["dars"] = agg
    tables["variants"] = _tagged(
        [
            ({"variant": pl.lit(v, pl.String)}, fn(obs, lam=lam, beta=beta))
            for v, fn in VARIANTS.items()
        ]
    )
    shots = single_shot(obs, names, draws=draws, seed=seed, lam=lam)
    tables["single_shot_draws"] = shots.draws
    tables["single_shot_labels"] = shots.labels
    tables["labels"] = dars_labels(agg, names)
    tables["subgrid"] = _tagged(
        [
            (
                {"k": pl.lit(k, pl.Int32), "m": pl.lit(m, pl.Int32)},
                subgrid_dars(obs, k=k, m=m, seed=seed, lam=lam, beta=beta),
            )
            for k, m in protocols
        ]
    )
    tables["diagnostics"] = diagnostics(
        obs, names, lam=lam, beta=beta, draws=draws, seed=seed, n_boot=n_boot
    )
    if truth is not None:
        tables["recovery"] = recovery_table(
            obs,
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
        )
    return tables


def summarise(
    dataset: str,
    tables: dict[str, pl.DataFrame],
    *,
    n_observations: int,
    n_queries_dropped: int,
) -> pl.DataFrame:
    """Compact summary of one dataset: one row per metric, columns :data:`SUMMARY_COLUMNS`.

    Rows, in order: ``n_queries``, ``n_models``, ``n_observations``, ``n_queries_dropped``
    (counts; no CI), the diagnostics metrics (value and bootstrap CI), then, when the
    ``recovery`` table exists, ``recovery:<supervision>`` for single-shot and each variant
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
        tables["diagnostics"].select(SUMMARY_COLUMNS),
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


def _fmt(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if metric.startswith("n_"):
        return f"{int(value):,}"
    return f"{value:.3f}"


def diagnostics_table(summary: pl.DataFrame, *, title: str = "Supervision summary") -> Table:
    """A rich table of a summary frame (:func:`summarise` / :func:`supervise`): one row per
    (dataset, metric) with the value and its 95% bootstrap CI ("—" where there is none)."""
    from rich.table import Table

    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks column(s) {missing}; expected {list(SUMMARY_COLUMNS)}")
    table = Table(title=title)
    table.add_column("dataset")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    previous = None
    for row in summary.iter_rows(named=True):
        metric = row["metric"]
        lo, hi = row["ci_low"], row["ci_high"]
        ci = (
            "—"
            if lo is None or hi is None or math.isnan(lo) or math.isnan(hi)
            else f"[{_fmt(lo, metric)}, {_fmt(hi, metric)}]"
        )
        # Print each dataset name once and separate datasets by a rule, for readability.
        first = row["dataset"] != previous
        if first and previous is not None:
            table.add_section()
        table.add_row(row["dataset"] if first else "", metric, _fmt(row["value"], metric), ci)
        previous = row["dataset"]
    return table


# ------------------------------------------------------------------------------------------------
# I/O side
# ------------------------------------------------------------------------------------------------
def train_grid(experiment: Experiment) -> tuple[list[int], int]:
    """(formulation ids, number of decodes) of the experiment's train protocol."""
    p = experiment.protocol
    rewrites = ([-1] if p.train_include_original else []) + list(range(p.train_rewrites))
    return rewrites, p.train_decodes


def load_train_observations(experiment: Experiment, root: str | Path, dataset: str) -> pl.DataFrame:
    """The rows the stage supervises on: ``dataset``'s train-split, view-train, status-ok
    observations of the pool models inside the protocol's grid (columns ``_OBS_COLUMNS``).

    Raises ``FileNotFoundError`` naming the store location and what it holds for the dataset
    when there is no such row (e.g. the decode stage has not run).
    """
    models = experiment.pool.names
    rewrites, n_decodes = train_grid(experiment)
    obs = (
        scan_observations(root, dataset=dataset, split="train", model=models, status="ok")
        .filter(
            (pl.col("view") == "train")
            & pl.col("rewrite_id").is_in(rewrites)
            & (pl.col("decode_id") < n_decodes)
        )
        .select(_OBS_COLUMNS)
        .collect()
    )
    if obs.height == 0:
        layout = RunLayout(root)
        held = (
            scan_observations(root, dataset=dataset)
            .group_by("split", "status")
            .agg(pl.len())
            .sort("split", "status")
            .collect()
        )
        what = (
            ", ".join(f"{r['len']} {r['split']}/{r['status']}" for r in held.iter_rows(named=True))
            or "nothing"
        )
        raise FileNotFoundError(
            f"no ok train observations for dataset {dataset!r} and pool models {models} under "
            f"{layout.observations_dir() / f'dataset={dataset}' / 'split=train'} (the store holds "
            f"{what} for this dataset); collect observations first "
            f"(`dars collect --config <config.yaml> --root {layout.root}`)"
        )
    return obs


def simulated_truth(
    experiment: Experiment,
    dataset: str,
    query_ids: Sequence[str],
    bounds: pl.DataFrame,
    *,
    world: SimWorld | None = None,
    truth_rewrites: int = TRUTH_REWRITES,
) -> pl.DataFrame:
    """Ground truth of a simulated pool, one row per (dataset, query_id, model) of ``query_ids``
    × the pool: ``p_true`` and ``c_true``.

    ``p_true`` is the simulator's expected score averaged over ``truth_rewrites`` paraphrase ids
    (0..truth_rewrites-1): the expected quality of a fresh meaning-preserving formulation and
    decode, the quantity both DARS and single-shot estimate (and what the synthetic generator's
    truth is). ``c_true`` is the expected cost of one decode at the pool's prices (the
    ModelSpec's when set, else the simulated model's), min-max normalised with ``bounds`` (the
    dataset's observed cost range, :func:`~dars.supervision.core.cost_bounds`), i.e. on the
    ``c_norm`` scale.

    The truth is computed on a private copy of ``world`` (default: the process-wide world) with
    the experiment's train items registered, so the shared world is neither mutated nor raced.
    Raises ``ValueError`` when a query id is not a train item of the experiment.
    """
    from dars.benchmarks.loading import load_splits
    from dars.llm.sim import SimWorld, sim_world

    base = world if world is not None else sim_world()
    private = SimWorld(models=dict(base.models), profiles=dict(base.profiles), seed=base.seed)
    items = load_splits(experiment)[dataset]["train"]
    private.register_items(dataset, items)
    unknown = sorted(set(query_ids) - {it.query_id for it in items})
    if unknown:
        raise ValueError(
            f"dataset {dataset!r}: {len(unknown)} observed train query id(s) are not train items "
            f"of the experiment, e.g. {unknown[0]!r}; was the store written with another config "
            "(benchmark options, n_train, seed)?"
        )
    specs = experiment.pool.models
    sim_ids = [private.model(s.litellm_model).name for s in specs]
    prices = pl.DataFrame(
        {
            "sim_id": sim_ids,
            "model": [s.name for s in specs],
            "in_price": [
                s.input_price_per_m
                if s.input_price_per_m is not None
                else private.model(i).input_price_per_m
                for s, i in zip(specs, sim_ids, strict=True)
            ],
            "out_price": [
                s.output_price_per_m
                if s.output_price_per_m is not None
                else private.model(i).output_price_per_m
                for s, i in zip(specs, sim_ids, strict=True)
            ],
        }
    )
    row = bounds.filter(pl.col("dataset") == dataset)
    if row.height != 1:
        raise ValueError(f"cost bounds have no row for dataset {dataset!r}")
    lo, hi = row["cost_min"].item(), row["cost_max"].item()
    span = hi - lo
    frame = private.truth_frame([dataset], sorted(set(sim_ids)), range(truth_rewrites))
    cost = (
        pl.col("expected_prompt_tokens") * pl.col("in_price")
        + pl.col("expected_completion_tokens") * pl.col("out_price")
    ) / 1e6
    return (
        frame.filter(pl.col("query_id").is_in(list(query_ids)))
        .group_by("dataset", "query_id", pl.col("model").alias("sim_id"))
        .agg(
            p_true=pl.col("p_true").mean(),
            expected_prompt_tokens=pl.col("expected_prompt_tokens").first(),
            expected_completion_tokens=pl.col("expected_completion_tokens").first(),
        )
        .join(prices, on="sim_id", how="inner")
        .with_columns(c_true=((cost - lo) / span) if span > 0 else pl.lit(0.0))
        .select(*CELL_KEY, "p_true", "c_true")
        .sort(CELL_KEY)
    )


def supervise_dataset(
    experiment: Experiment,
    root: str | Path,
    dataset: str,
    *,
    n_boot: int = 1000,
    world: SimWorld | None = None,
) -> DatasetSupervision:
    """Read ``dataset``'s train observations under ``root``, compute every supervision table and
    write them (see the module docstring for the tables and their paths).

    ``world``: the simulated world whose truth the ``recovery`` table uses (default: the
    process-wide one); ignored for non-simulated pools. Rerunning on the same store rewrites
    identical files.
    """
    experiment.benchmark(dataset)  # unknown names raise listing the experiment's benchmarks
    models = experiment.pool.names
    raw = load_train_observations(experiment, root, dataset)
    obs, n_dropped = complete_queries(raw, models)
    if obs.height == 0:
        have = sorted(raw["model"].unique().to_list())
        raise ValueError(
            f"dataset {dataset!r}: no train query has an ok observation for every pool model; "
            f"models with observations: {have}, pool: {models}"
        )
    k_max, m_max = grid_size(obs)
    protocols = subgrid_protocols(k_max, m_max)
    truth = None
    if is_simulated(experiment):
        truth = simulated_truth(
            experiment,
            dataset,
            obs["query_id"].unique().to_list(),
            cost_bounds(obs),
            world=world,
        )
    tables = supervision_tables(
        obs,
        models,
        lam=experiment.lam,
        beta=experiment.beta,
        draws=experiment.single_shot_draws,
        seed=experiment.seed,
        protocols=protocols,
        truth=truth,
        n_boot=n_boot,
    )
    tables["summary"] = summarise(
        dataset, tables, n_observations=obs.height, n_queries_dropped=n_dropped
    )
    # Drop the completion marker first: until the new summary lands, a reader must not take an
    # old summary as proof that the (partly rewritten) tables are complete.
    remove_supervision(root, dataset, "summary")
    if "recovery" not in tables:
        remove_supervision(root, dataset, "recovery")
    files = {
        name: write_supervision(root, dataset, name, tables[name])
        for name in TABLES
        if name in tables
    }
    return DatasetSupervision(dataset, files, tables["summary"])


def supervise(
    experiment: Experiment,
    root: str | Path | None = None,
    *,
    datasets: Sequence[str] | None = None,
    n_boot: int = 1000,
    world: SimWorld | None = None,
) -> pl.DataFrame:
    """Run :func:`supervise_dataset` for each dataset (default: every benchmark of the
    experiment, in config order) under ``root`` (default: ``experiment.root``); returns the
    concatenated summaries (columns :data:`SUMMARY_COLUMNS`)."""
    root = experiment.root if root is None else root
    names = [b.name for b in experiment.benchmarks] if datasets is None else list(datasets)
    return pl.concat(
        [supervise_dataset(experiment, root, d, n_boot=n_boot, world=world).summary for d in names]
    )
