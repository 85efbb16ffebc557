"""Evaluation experiments beyond ``main``: ablation (Table 2), diagnostics (Fig 2, label
recovery) and validity (Tables 5 and 6).

Each experiment has a pure part (frames in, frame out; no paths) and an I/O function
``evaluate_<name>(exp, root)`` that reads the run's stores, calls the pure part and writes the
result(s) with :func:`dars.evaluation.results.write_result` (``results/<name>.{parquet,json}``).

Results written here (long/tidy frames; views are ``test_rewrite`` and ``test_decode``):

``ablation`` (:func:`evaluate_ablation`)
    One row per (dataset, view, variant) for one router family (``exp.evaluation
    .ablation_family``), variants in Table-2 order (:data:`ABLATION_VARIANTS`): the router
    trained on that supervision, scored like ``main`` (:func:`dars.evaluation.stage.score_routes`).
``diagnostics``, ``single_shot_distribution``, ``recovery`` (:func:`evaluate_diagnostics`)
    The supervise stage's Figure-2 metrics of every dataset; the test utility of every single-shot
    draw of every family (Figure 2c); label recovery against the simulator's truth (simulated
    pools only).
``rewrite_validity``, ``scoring_validity`` (:func:`evaluate_validity`)
    :func:`~dars.benchmarks.rewrite_checks.rewrite_validity_table` over the rewrite store and
    :func:`~dars.benchmarks.validity.scoring_validity` over the observation store, every ok
    observation rescored against its item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from dars.benchmarks.base import Benchmark, Item, get
from dars.benchmarks.loading import items_by_id, load_splits
from dars.benchmarks.rewrite_checks import rewrite_validity_table
from dars.benchmarks.validity import KEY as OBSERVATION_KEY
from dars.benchmarks.validity import scoring_validity
from dars.config import Experiment
from dars.evaluation.metrics import VIEW_SHORT, VIEWS, router_utilities, view_columns
from dars.evaluation.results import remove_result, write_result
from dars.evaluation.stage import ROUTE_SCORE_COLUMNS, load_view_utilities, score_routes
from dars.routers.training import check_families
from dars.storage import RunLayout, scan_observations, scan_rewrites
from dars.storage.supervision_store import read_supervision, supervision_exists
from dars.supervision.ablations import VARIANTS
from dars.supervision.diagnostics import METRIC_SCHEMA

__all__ = [
    "ABLATION_COLUMNS",
    "ABLATION_VARIANTS",
    "DIAGNOSTICS_COLUMNS",
    "RECOVERY_COLUMNS",
    "SINGLE_SHOT_DISTRIBUTION_COLUMNS",
    "ablation",
    "ablation_table",
    "evaluate_ablation",
    "evaluate_diagnostics",
    "evaluate_validity",
    "single_shot_distribution",
    "stack_supervision",
]

#: Table-2 rows, in the paper's order.
ABLATION_VARIANTS: tuple[str, ...] = ("single_shot", *VARIANTS)
ABLATION_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "variant": pl.String,
    **{k: v for k, v in ROUTE_SCORE_COLUMNS.items() if k != "view"},
}
DIAGNOSTICS_COLUMNS = METRIC_SCHEMA
SINGLE_SHOT_DISTRIBUTION_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "draw": pl.Int32,
    "U": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
}
RECOVERY_COLUMNS = {
    "dataset": pl.String,
    "supervision": pl.String,
    "k": pl.Int32,
    "m": pl.Int32,
    "recovery": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "regret": pl.Float64,
    "n_queries": pl.Int64,
    "n_labels": pl.Int64,
}
_TRAIN_CMD = "dars train --config <config.yaml> --root {root}"


def _resolve(exp: Experiment, root: str | Path | None) -> Path:
    return Path(exp.root if root is None else root)


# ------------------------------------------------------------------------------------------------
# ablation (Table 2)
# ------------------------------------------------------------------------------------------------
def ablation(
    view_utils: Mapping[str, pl.DataFrame],
    routes: Mapping[tuple[str, str], pl.DataFrame],
    *,
    family: str,
    n_boot: int,
    seed: int,
) -> pl.DataFrame:
    """The ablation of one router family over supervision variants (pure).

    ``view_utils``: ``{dataset: view_utilities rows}``; ``routes``: ``{(dataset, variant):
    routes.parquet rows}`` of ``family`` trained on that variant's supervision (variants from
    :data:`ABLATION_VARIANTS`; ``single_shot`` routes hold every draw). Every (dataset, variant)
    pair must be given.

    One row per (dataset, view, variant) with :data:`ABLATION_COLUMNS`, ordered by dataset (as
    in ``view_utils``), variant (Table-2 order), view (rewrite, then decode). U/Q/C as in
    ``main``: for ``single_shot`` the mean over the ``n_draws`` draws and ``U_std`` their std;
    for the other variants the router's value and ``U_low``/``U_high`` = bootstrap CI over test
    queries (``n_boot`` resamples seeded with ``seed``).
    """
    missing = [f"{ds}/{v}" for ds in view_utils for v in ABLATION_VARIANTS if (ds, v) not in routes]
    if missing:
        raise ValueError(f"ablation of {family!r}: no routes for {', '.join(missing)}")
    view_rank = {v: i for i, v in enumerate(("test_rewrite", "test_decode"))}
    rows: list[dict[str, Any]] = []
    for dataset, vu in view_utils.items():
        for variant in ABLATION_VARIANTS:
            scored = score_routes(
                routes[(dataset, variant)],
                vu,
                dataset=dataset,
                single_shot=variant == "single_shot",
                n_boot=n_boot,
                seed=seed,
            )
            ordered = sorted(scored.iter_rows(named=True), key=lambda r: view_rank[r["view"]])
            rows += [
                {"dataset": dataset, "family": family, "variant": variant, **r} for r in ordered
            ]
    return pl.DataFrame(rows, schema=ABLATION_COLUMNS)


def ablation_table(ablation: pl.DataFrame, datasets: Sequence[str] | None = None) -> pl.DataFrame:
    """The paper's Table 2 from ``ablation`` rows of one family (pure).

    One row per variant present, in Table-2 order; column ``variant``, then ``<dataset>_rew``
    and ``<dataset>_dec`` (test utility U in the rewrite / decode view; single-shot: mean over
    draws) for each dataset of ``datasets`` (default: those of the frame, sorted), then
    ``average`` = unweighted mean of those columns (null when one of them is missing).
    """
    need = ("dataset", "view", "family", "variant", "U")
    absent = [c for c in need if c not in ablation.columns]
    if absent:
        raise ValueError(f"ablation frame lacks column(s) {absent}; it has {ablation.columns}")
    families = ablation["family"].unique().to_list()
    if len(families) > 1:
        raise ValueError(f"ablation frame holds several families {sorted(families)}; pass one")
    unknown = sorted(set(ablation["variant"].to_list()) - set(ABLATION_VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; valid: {', '.join(ABLATION_VARIANTS)}")
    bad_views = sorted(set(ablation["view"].to_list()) - set(VIEWS))
    if bad_views:
        raise ValueError(f"unknown view(s) {bad_views}; valid: {', '.join(VIEWS)}")
    dup = ablation.filter(pl.struct("dataset", "view", "variant").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise ValueError(
            f"ablation frame has several rows for dataset={r['dataset']!r}, view={r['view']!r}, "
            f"variant={r['variant']!r}"
        )
    if datasets is None:
        datasets = sorted(ablation["dataset"].unique().to_list())
    columns = view_columns(datasets)
    wide = ablation.with_columns(
        (pl.col("dataset") + "_" + pl.col("view").replace_strict(VIEW_SHORT)).alias("column")
    ).pivot(on="column", index="variant", values="U", aggregate_function=None)
    order = {v: i for i, v in enumerate(ABLATION_VARIANTS)}
    wide = wide.with_columns(
        [pl.lit(None, dtype=pl.Float64).alias(c) for c in columns if c not in wide.columns]
    )
    any_null = pl.any_horizontal([pl.col(c).is_null() for c in columns])
    return (
        wide.select("variant", *columns)
        .with_columns(
            pl.when(any_null).then(None).otherwise(pl.mean_horizontal(columns)).alias("average")
        )
        .sort(pl.col("variant").replace_strict(order, return_dtype=pl.Int64))
    )


def _variant_routes(layout: RunLayout, dataset: str, family: str, variant: str) -> tuple[str, Path]:
    """(mode trained for ``variant``, its routes file). ``full_dars`` equals ``dars`` and is not
    trained by default, so its own routes are used only when someone trained them."""
    if variant == "full_dars":
        own = layout.routes_file(dataset, family, "full_dars")
        if own.is_file():
            return "full_dars", own
        return "dars", layout.routes_file(dataset, family, "dars")
    return variant, layout.routes_file(dataset, family, variant)


def evaluate_ablation(
    exp: Experiment,
    root: str | Path | None = None,
    *,
    family: str | None = None,
    n_boot: int | None = None,
) -> pl.DataFrame:
    """Table 2 for ``family`` (default ``exp.evaluation.ablation_family``) on every benchmark:
    read the test observations and the family's routes per variant, write and return result
    ``ablation`` (see :func:`ablation`; ``n_boot`` default ``exp.evaluation.n_boot``).

    A variant without routes raises FileNotFoundError naming each missing model directory and
    the ``dars train`` command that trains them."""
    root = _resolve(exp, root)
    family = family or exp.evaluation.ablation_family
    check_families([family])
    n_boot = exp.evaluation.n_boot if n_boot is None else n_boot
    layout = RunLayout(root)
    sources: dict[tuple[str, str], tuple[str, Path]] = {
        (b.name, v): _variant_routes(layout, b.name, family, v)
        for b in exp.benchmarks
        for v in ABLATION_VARIANTS
    }
    missing = {k: src for k, src in sources.items() if not src[1].is_file()}
    if missing:
        modes = list(dict.fromkeys(mode for mode, _ in missing.values()))
        dirs = "; ".join(str(path.parent) for _, path in missing.values())
        command = f"{_TRAIN_CMD.format(root=root)} --family {family} " + " ".join(
            f"--mode {m}" for m in modes
        )
        raise FileNotFoundError(
            f"ablation of router family {family!r} needs routes that are not trained "
            f"(no routes.parquet in {dirs}); train them with `{command}`"
        )
    view_utils = load_view_utilities(exp, root)
    routes = {k: pl.read_parquet(path) for k, (_, path) in sources.items()}
    frame = ablation(view_utils, routes, family=family, n_boot=n_boot, seed=exp.seed)
    write_result(
        exp,
        root,
        "ablation",
        frame,
        family=family,
        n_boot=n_boot,
        trained_modes={f"{ds}/{v}": mode for (ds, v), (mode, _) in sources.items()},
    )
    return frame


# ------------------------------------------------------------------------------------------------
# diagnostics (Figure 2, label recovery)
# ------------------------------------------------------------------------------------------------
def stack_supervision(
    tables: Sequence[pl.DataFrame], columns: Mapping[str, Any], what: str
) -> pl.DataFrame:
    """One frame from per-dataset supervision tables (pure): the rows of every table, in the
    given order, with exactly ``columns`` (name → dtype); ValueError naming ``what`` and the
    lacking columns when a table does not have them."""
    parts = []
    for t in tables:
        absent = [c for c in columns if c not in t.columns]
        if absent:
            ds = t["dataset"][0] if "dataset" in t.columns and t.height else "?"
            raise ValueError(f"{what} table of dataset {ds!r} lacks column(s) {absent}")
        parts.append(t.select([pl.col(c).cast(dtype) for c, dtype in columns.items()]))
    if not parts:
        return pl.DataFrame(schema=dict(columns))
    return pl.concat(parts, how="vertical")


def single_shot_distribution(
    view_utils: Mapping[str, pl.DataFrame], routes: Mapping[tuple[str, str], pl.DataFrame]
) -> pl.DataFrame:
    """Test utility of every single-shot router draw — the distribution of Figure 2c (pure).

    ``view_utils``: ``{dataset: view_utilities rows}``; ``routes``: ``{(dataset, family):
    single-shot routes.parquet rows}`` (S draws each). One row per (dataset, view, family, draw)
    with :data:`SINGLE_SHOT_DISTRIBUTION_COLUMNS`: ``U``/``Q``/``C`` = mean over the view's test
    queries of the utility / quality / normalised cost of the model draw ``draw`` routes each
    query to. Sorted by dataset, view, family, draw.
    """
    parts = []
    for (dataset, family), r in routes.items():
        if dataset not in view_utils:
            raise ValueError(f"routes of ({dataset!r}, {family!r}) but no view utilities for it")
        ru = router_utilities(r, view_utils[dataset], dataset=dataset)
        parts.append(ru.with_columns(family=pl.lit(family, dtype=pl.String)))
    schema = SINGLE_SHOT_DISTRIBUTION_COLUMNS
    if not parts:
        return pl.DataFrame(schema=schema)
    return (
        pl.concat(parts, how="vertical")
        .select([pl.col(c).cast(dtype) for c, dtype in schema.items()])
        .sort("dataset", "view", "family", "draw")
    )


def evaluate_diagnostics(exp: Experiment, root: str | Path | None = None) -> pl.DataFrame:
    """Figure 2 and label recovery for every benchmark; writes results ``diagnostics``,
    ``single_shot_distribution`` and, when the supervise stage wrote label recovery (simulated
    pools), ``recovery`` — otherwise a ``recovery`` result left by an earlier run is removed, so
    the report never shows a stale one. Returns the ``diagnostics`` frame.

    Needs the supervise stage's tables (``dars supervise``), the test observations (``dars
    collect``) and, per dataset, single-shot routes of at least one family (``dars train
    --mode single_shot``); errors name what is missing."""
    root = _resolve(exp, root)
    layout = RunLayout(root)
    names = [b.name for b in exp.benchmarks]
    diag = stack_supervision(
        [read_supervision(root, ds, "diagnostics") for ds in names],
        DIAGNOSTICS_COLUMNS,
        "diagnostics",
    )
    recovered = [ds for ds in names if supervision_exists(root, ds, "recovery")]
    recovery = stack_supervision(
        [read_supervision(root, ds, "recovery") for ds in recovered], RECOVERY_COLUMNS, "recovery"
    )

    routes: dict[tuple[str, str], pl.DataFrame] = {}
    for ds in names:
        families = [
            f
            for f, mode in layout.trained_routers(ds)
            if mode == "single_shot" and layout.routes_file(ds, f, mode).is_file()
        ]
        if not families:
            raise FileNotFoundError(
                f"no single-shot routes for dataset {ds!r} under {layout.models_dir()}; train "
                f"them with `{_TRAIN_CMD.format(root=root)} --mode single_shot`"
            )
        for f in families:
            routes[(ds, f)] = pl.read_parquet(layout.routes_file(ds, f, "single_shot"))
    dist = single_shot_distribution(load_view_utilities(exp, root), routes)

    write_result(exp, root, "diagnostics", diag)
    write_result(exp, root, "single_shot_distribution", dist)
    if recovered:
        write_result(exp, root, "recovery", recovery, datasets=recovered)
    else:
        remove_result(root, "recovery")
    return diag


# ------------------------------------------------------------------------------------------------
# validity (Tables 5 and 6)
# ------------------------------------------------------------------------------------------------
def evaluate_validity(exp: Experiment, root: str | Path | None = None) -> dict[str, pl.DataFrame]:
    """Tables 5 and 6 for the experiment's benchmarks and pool; writes and returns
    ``{"rewrite_validity": …, "scoring_validity": …}``.

    ``rewrite_validity``: one row per (dataset, split) of the rewrite store
    (:func:`~dars.benchmarks.rewrite_checks.rewrite_validity_table`; the checks were computed
    by ``dars collect`` when the rewrites were stored). ``scoring_validity``: one row per
    (dataset, split) of the pool's observations
    (:func:`~dars.benchmarks.validity.scoring_validity`), every ok observation scored again
    with the benchmark's scorer against its item (identical (dataset, query, response) triples
    once). A dataset without observations is an error (``dars collect``); one whose observations
    use rewrites (``rewrite_id >= 0``) without stored rewrites too. Decode-only data (e.g.
    imported with ``dars import``) has no rewrites and no Table-5 row.
    """
    root = _resolve(exp, root)
    layout = RunLayout(root)
    names = [b.name for b in exp.benchmarks]
    obs = (
        scan_observations(root, dataset=names, model=exp.pool.names)
        .select(*OBSERVATION_KEY, "response", "parse_ok", "score", "status")
        .collect()
    )
    no_obs = sorted(set(names) - set(obs["dataset"].unique().to_list()))
    if no_obs:
        raise FileNotFoundError(
            f"no observations of the pool for dataset(s) {no_obs} under "
            f"{layout.observations_dir()}; run `dars collect`"
        )
    rewrites = scan_rewrites(root, dataset=names).collect()
    uses_rewrites = set(obs.filter(pl.col("rewrite_id") >= 0)["dataset"].unique().to_list())
    no_rewrites = sorted(uses_rewrites - set(rewrites["dataset"].unique().to_list()))
    if no_rewrites:
        raise FileNotFoundError(
            f"observations of dataset(s) {no_rewrites} answer rewrites, but no rewrites are "
            f"stored under {layout.rewrites_dir()}; run `dars collect` to produce them"
        )

    splits = load_splits(exp)
    items: dict[str, list[Item]] = {ds: list(items_by_id(splits[ds]).values()) for ds in names}
    benchmarks: dict[str, Benchmark] = {b.name: get(b.name, **b.options) for b in exp.benchmarks}
    tables = {
        "rewrite_validity": rewrite_validity_table(rewrites).with_columns(
            pl.col("records", "rewrites").cast(pl.Int64)
        ),
        "scoring_validity": scoring_validity(obs, items, benchmarks=benchmarks),
    }
    for name, frame in tables.items():
        write_result(exp, root, name, frame)
    return tables
