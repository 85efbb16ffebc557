"""Benchmark: the paper-scale router grid from cached supervision, and the sequential path.

Builds cached supervision first (untimed): per dataset, a seeded synthetic observation grid
(``dars.supervision.synthetic``: ``--n-train`` queries × ``--models`` models × 5 rewrites × 5
decodes) turned into every supervision table by ``dars.supervision.tables.supervision_tables``,
and seeded L2-normalised query embeddings of ``--dim`` dimensions (MiniLM's 384 by default).

Then, timed, the grid as ``dars train`` and the Fig 4 sweeps compute it, without storage:

* train: every (dataset, family, supervision) of ``dars train`` — single_shot (S draws in one
  ``fit_many``), dars and the five ablations — fitted and routed at (λ, β) and, for single_shot
  and dars, at every λ of the Pareto grid (``dars.routers.training.fit_and_route``);
* sweeps: per (dataset, family), the sample-efficiency protocols (``fit_protocols``, Fig 4a) and
  the β sweep's fits (Fig 4c: one fit per β for families that fold β into training, else one).

Jobs run on ``--workers`` threads, as the train flow's task runner runs them.

Side by side in the same run, on a subset (the first dataset, the first ``--baseline-draws``
single-shot draws, every family, one thread): the sequential per-draw path — one independent
fit per draw, one family at a time, each draw routed at (λ, β) and every λ of the grid, as the
DARS authors' scripts train their single-shot routers — against this package's batched path on
the same draws (``fit_and_route`` with ``BatchedTargets``). In the sequential path ``mlp`` is
scikit-learn's ``MLPRegressor`` with the settings this package used before its torch MLP (one
multi-output regressor, (128, 64), max_iter 200; the authors' script fits three such regressors
with max_iter 800, so this baseline is the cheaper one); the other families are this package's
routers fitted one draw at a time.

    python bench/bench_train.py              # paper scale: 3 × 200 train, 6 models, S=100
    python bench/bench_train.py --quick --out /tmp/bench_train.json   # seconds; tests/CI

Prints tables and, with --out, writes everything as JSON. Wall and CPU seconds are both reported:
on a shared machine CPU time and same-run ratios are the steadier measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.rows when run as a script

from bench.rows import machine  # noqa: E402
from dars.config import Evaluation  # noqa: E402
from dars.evaluation.experiments.sample_efficiency import fit_protocols, protocol_targets
from dars.routers import BatchedTargets, Router, available_routers, route_many
from dars.routers.training import (
    DEFAULT_SUPERVISIONS,
    LAM_SWEEP_SUPERVISIONS,
    fit_and_route,
    folds_beta,
    new_router,
    training_targets,
)
from dars.supervision.synthetic import synthetic_observations
from dars.supervision.tables import subgrid_protocols, supervision_tables

LAM, BETA, SEED = 0.05, 0.2, 0
K, M_DECODES = 5, 5


class Dataset(NamedTuple):
    """One dataset's cached inputs: supervision tables and query embeddings."""

    name: str
    models: tuple[str, ...]
    tables: dict[str, pl.DataFrame]
    train_ids: list[str]
    X_train: np.ndarray
    test_ids: list[str]
    X_test: np.ndarray


def _embeddings(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    X = rng.normal(size=(n, dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def build_dataset(
    name: str, index: int, *, n_train: int, n_test: int, n_models: int, dim: int, draws: int
) -> Dataset:
    """Synthetic cached supervision and embeddings of one dataset (seeded by ``index``)."""
    models = tuple(f"model{j}" for j in range(n_models))
    obs = synthetic_observations(
        n_queries=n_train,
        models=models,
        n_rewrites=K,
        n_decodes=M_DECODES,
        datasets=(name,),
        seed=index,
    ).observations
    tables = supervision_tables(
        obs,
        models,
        lam=LAM,
        beta=BETA,
        draws=draws,
        seed=SEED,
        protocols=subgrid_protocols(K, M_DECODES),
        n_boot=20,
    )
    train_ids = sorted(obs["query_id"].unique().to_list())
    rng = np.random.default_rng(1000 + index)
    return Dataset(
        name,
        models,
        tables,
        train_ids,
        _embeddings(n_train, dim, rng),
        [f"t{i:04d}" for i in range(n_test)],
        _embeddings(n_test, dim, rng),
    )


def supervision_rows(data: Dataset, supervision: str) -> pl.DataFrame:
    """The rows ``supervision`` trains on (what ``dars.tasks.train.supervision_frame`` reads)."""
    if supervision == "single_shot":
        return data.tables["single_shot_draws"]
    if supervision == "dars":
        return data.tables["dars"]
    ablations = data.tables["ablations"]
    return ablations.filter(pl.col("supervision") == supervision).drop("supervision")


def prototype(family: str, lam_grid: list[float], params: dict[str, Any]) -> Router:
    return new_router(family, random_state=SEED, beta=BETA, lam_grid=(LAM, *lam_grid)).set_params(
        **params
    )


# ------------------------------------------------------------------------------------ the grid
def train_job(data: Dataset, family: str, supervision: str, ev: Evaluation, params: dict) -> int:
    """One (dataset, family, supervision) of ``dars train``; returns the routers fitted."""
    rows, targets = training_targets(
        supervision_rows(data, supervision), supervision, data.train_ids, list(data.models)
    )
    lam_grid = ev.lam_grid if supervision in LAM_SWEEP_SUPERVISIONS else None
    fitted = fit_and_route(
        prototype(family, ev.lam_grid, params),
        data.X_train[rows],
        targets,
        data.X_test,
        lam=LAM,
        beta=BETA,
        lam_grid=lam_grid,
    )
    return len(fitted.routers)


def sweep_job(data: Dataset, family: str, ev: Evaluation, params: dict) -> int:
    """The Fig 4 fits of one (dataset, family): sample-efficiency protocols and the β sweep."""
    proto = prototype(family, ev.lam_grid, params)
    protocols = protocol_targets(data.tables["subgrid"], data.train_ids, list(data.models))
    routers = fit_protocols(proto, data.X_train, protocols)
    route_many(routers, data.X_test, lam=LAM, beta=BETA)
    rows, targets = training_targets(data.tables["dars"], "dars", data.train_ids, list(data.models))
    X = data.X_train[rows]
    if folds_beta(proto):  # β is part of the training targets: one fit per β
        for b in ev.beta_grid:
            clone(proto).set_params(beta=b).fit(X, targets).route(data.X_test, LAM, b)
        return len(routers) + len(ev.beta_grid)
    router = clone(proto).fit(X, targets)
    for b in ev.beta_grid:
        router.route(data.X_test, LAM, b)
    return len(routers) + 1


def run_grid(
    datasets: list[Dataset], families: list[str], workers: int, params: dict[str, dict]
) -> dict[str, Any]:
    ev = Evaluation()
    jobs: list[tuple[str, str, str, Any]] = []
    for data in datasets:
        for family in families:
            p = params.get(family, {})
            for sup in DEFAULT_SUPERVISIONS:
                jobs.append((data.name, family, sup, (train_job, data, family, sup, ev, p)))
            jobs.append((data.name, family, "sweeps", (sweep_job, data, family, ev, p)))

    def timed(spec: tuple) -> tuple[int, float]:
        fn, *args = spec
        t0 = time.perf_counter()
        n = fn(*args)
        return n, time.perf_counter() - t0

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(timed, [j[3] for j in jobs]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per: dict[str, dict[str, float]] = {}
    for (_, family, sup, _), (n, s) in zip(jobs, results, strict=True):
        row = per.setdefault(family, {"family": family, "jobs": 0, "fits": 0, "job_s": 0.0})
        row["jobs"] += 1
        row["fits"] += n
        row["job_s"] += s
        key = "single_shot_s" if sup == "single_shot" else "sweeps_s" if sup == "sweeps" else None
        if key:
            row[key] = row.get(key, 0.0) + s
    return {"wall_s": wall, "cpu_s": cpu, "workers": workers, "rows": list(per.values())}


# -------------------------------------------------------------------- sequential vs batched
def _sklearn_mlp_routes(
    X: np.ndarray, targets: Any, X_test: np.ndarray, lams: list[float]
) -> np.ndarray:
    """The previous mlp (one multi-output MLPRegressor on standardised inputs) fitted on one
    draw; its routes at each λ (single-shot targets carry no σ)."""
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    est = MLPRegressor(hidden_layer_sizes=(128, 64), random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit((X - mean) / scale, np.concatenate([targets.q, targets.c], axis=1))
    out = est.predict((X_test - mean) / scale)
    m = targets.n_models
    return np.stack([np.argmax(out[:, :m] - lam * out[:, m : 2 * m], axis=1) for lam in lams])


def sequential_path(
    family: str, X: np.ndarray, draws: BatchedTargets, X_test: np.ndarray, ev: Evaluation, p: dict
) -> None:
    """One independent fit per draw, each routed at λ and at every λ of the grid."""
    lams = [LAM, *ev.lam_grid]
    for s in range(draws.n_draws):
        if family == "mlp":
            with threadpool_limits(limits=1):
                _sklearn_mlp_routes(X, draws.draw(s), X_test, lams)
            continue
        router = clone(prototype(family, ev.lam_grid, p)).fit(X, draws.draw(s))
        for lam in lams:
            router.route(X_test, lam, BETA)


def compare_paths(
    data: Dataset, families: list[str], n_draws: int, params: dict[str, dict]
) -> list[dict[str, Any]]:
    ev = Evaluation()
    frame = data.tables["single_shot_draws"].filter(pl.col("draw") < n_draws)
    rows, draws = training_targets(frame, "single_shot", data.train_ids, list(data.models))
    X = data.X_train[rows]
    out = []
    for family in families:
        p = params.get(family, {})
        t0, c0 = time.perf_counter(), time.process_time()
        sequential_path(family, X, draws, data.X_test, ev, p)
        t_seq, c_seq = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        fit_and_route(
            prototype(family, ev.lam_grid, p),
            X,
            draws,
            data.X_test,
            lam=LAM,
            beta=BETA,
            lam_grid=ev.lam_grid,
        )
        t_bat, c_bat = time.perf_counter() - t0, time.process_time() - c0
        out.append(
            {
                "family": family,
                "draws": n_draws,
                "sequential_s": t_seq,
                "batched_s": t_bat,
                "sequential_cpu_s": c_seq,
                "batched_cpu_s": c_bat,
                "speedup": t_seq / max(t_bat, 1e-9),
                "cpu_speedup": c_seq / max(c_bat, 1e-9),
            }
        )
        print(f"  compared {family}", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------------- output
def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str, int]]) -> str:
    """``rows`` as a markdown table: (key, title, decimals) per column (-1: as is)."""
    frame = pl.DataFrame(rows).select(
        (pl.col(k).round(d) if d >= 0 else pl.col(k)).alias(t) for k, t, d in cols
    )
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=40,
    ):
        return str(frame)


def format_report(result: dict[str, Any]) -> str:
    grid, cmp_rows = result["grid"], result["compare"]
    lines = [
        "no grid run (--skip-grid)"
        if not grid["rows"]
        else _table(
            grid["rows"],
            [
                ("family", "family", -1),
                ("jobs", "jobs", -1),
                ("fits", "routers", -1),
                ("single_shot_s", "single-shot s", 1),
                ("sweeps_s", "sweeps s", 1),
                ("job_s", "all jobs s", 1),
            ],
        ),
        f"grid: {grid['wall_s']:.1f} s wall, {grid['cpu_s']:.1f} s CPU on {grid['workers']} "
        f"worker thread(s) (target: <= 600 s wall on 2 cores at paper scale)",
        "",
        _table(
            cmp_rows,
            [
                ("family", "family", -1),
                ("draws", "S", -1),
                ("sequential_s", "sequential s", 2),
                ("batched_s", "batched s", 2),
                ("speedup", "ratio", 1),
                ("sequential_cpu_s", "seq cpu s", 2),
                ("batched_cpu_s", "batch cpu s", 2),
                ("cpu_speedup", "cpu ratio", 1),
            ],
        ),
        f"subset: sequential per-draw path {result['sequential_s']:.1f} s vs batched "
        f"{result['batched_s']:.1f} s: {result['ratio']:.1f}x wall, {result['cpu_ratio']:.1f}x CPU",
    ]
    return "\n".join(lines)


QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "mlp": {"max_iter": 30},
    "avengers_pro": {"n_init": 2},
    "embedllm": {"epochs": 20},
    "graph_router": {"epochs": 20},
    "mirt": {"epochs": 20},
    "rm_softmax": {"epochs": 20},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and budgets (CI)")
    parser.add_argument("--datasets", type=int, default=None, help="default 3; quick 1")
    parser.add_argument("--n-train", type=int, default=None, help="default 200; quick 30")
    parser.add_argument("--n-test", type=int, default=None, help="default 250; quick 20")
    parser.add_argument("--dim", type=int, default=None, help="default 384; quick 16")
    parser.add_argument("--models", type=int, default=None, help="default 6; quick 4")
    parser.add_argument("--draws", type=int, default=None, help="S (default 100; quick 4)")
    parser.add_argument("--baseline-draws", type=int, default=None, help="default 10; quick 2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--families", default=",".join(available_routers()), help="comma-separated families"
    )
    parser.add_argument("--skip-grid", action="store_true", help="only the side-by-side subset")
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args(argv)

    q = args.quick
    sizes = {
        "datasets": args.datasets or (1 if q else 3),
        "n_train": args.n_train or (30 if q else 200),
        "n_test": args.n_test or (20 if q else 250),
        "dim": args.dim or (16 if q else 384),
        "models": args.models or (4 if q else 6),
        "draws": args.draws or (4 if q else 100),
        "baseline_draws": args.baseline_draws or (2 if q else 10),
    }
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(available_routers()))
    if unknown:
        parser.error(f"unknown families {unknown}; valid: {', '.join(available_routers())}")
    params = QUICK_PARAMS if q else {}

    t0 = time.perf_counter()
    datasets = [
        build_dataset(
            f"synth{i}",
            i,
            n_train=sizes["n_train"],
            n_test=sizes["n_test"],
            n_models=sizes["models"],
            dim=sizes["dim"],
            draws=sizes["draws"],
        )
        for i in range(sizes["datasets"])
    ]
    build_s = time.perf_counter() - t0
    print(
        f"train grid: {sizes['datasets']} dataset(s) × {sizes['n_train']} train × "
        f"{sizes['models']} models × {sizes['dim']} dims, {sizes['n_test']} test, "
        f"S={sizes['draws']}, {len(families)} families{' (quick)' if q else ''}; "
        f"cached supervision built in {build_s:.1f} s (untimed)",
        flush=True,
    )
    # Untimed warm-up: first use pays one-off imports (torch kernels, BLAS set-up).
    compare_paths(datasets[0], families, 1, QUICK_PARAMS)
    grid = (
        {"wall_s": 0.0, "cpu_s": 0.0, "workers": args.workers, "rows": []}
        if args.skip_grid
        else run_grid(datasets, families, args.workers, params)
    )
    cmp_rows = compare_paths(datasets[0], families, sizes["baseline_draws"], params)
    seq = sum(r["sequential_s"] for r in cmp_rows)
    bat = sum(r["batched_s"] for r in cmp_rows)
    cseq = sum(r["sequential_cpu_s"] for r in cmp_rows)
    cbat = sum(r["batched_cpu_s"] for r in cmp_rows)
    result = {
        "config": {
            **sizes,
            "quick": q,
            "families": families,
            "workers": args.workers,
            **machine(),
        },
        "grid": grid,
        "compare": cmp_rows,
        "sequential_s": seq,
        "batched_s": bat,
        "ratio": seq / max(bat, 1e-9),
        "cpu_ratio": cseq / max(cbat, 1e-9),
    }
    print(format_report(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
