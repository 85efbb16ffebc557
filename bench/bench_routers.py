"""Benchmark: training S draws per router family one at a time vs batched (``fit_many``).

For each family, on a seeded synthetic problem (``dars.routers.synthetic``) with single-shot
targets, it times S sequential ``clone(router).fit`` calls and one ``fit_many`` call, and compares
their routes on held-out queries: the largest per-draw fraction of queries routed differently,
the largest absolute difference of predicted utility (or policy score), and the mean true utility
of both sets of routes. Wall and CPU (process) seconds are both reported: on a shared machine
CPU time is the steadier measure of work. ``seed_noise`` is the route disagreement between two
sequential fits that differ only in ``random_state`` (over the first few draws): the scale
against which any disagreement of batched and sequential fits should be read.

    python bench/bench_routers.py        # demo: 120 train × 6 models × 384 dims, S=100
    python bench/bench_routers.py --quick --out /tmp/bench.json   # seconds; tests/CI

Prints a table and, with --out, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from dars.routers import available_routers, draw_seed, make_router, route_many
from dars.routers.synthetic import make_synthetic_task

# Quick mode shrinks training budgets so the whole script runs in seconds; it still goes through
# every code path (sequential fit, fit_many, route_many).
QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "mlp": {"max_iter": 20},
    "avengers_pro": {"n_init": 2},
    "embedllm": {"epochs": 20},
    "graph_router": {"epochs": 20},
    "mirt": {"epochs": 20},
    "rm_softmax": {"epochs": 20},
}
SEED_NOISE_DRAWS = 5


def _scores(routers: list, X: np.ndarray) -> np.ndarray:
    return np.stack([r.predict_utility(X) for r in routers])


def bench_family(
    family: str, task: Any, batched_targets: Any, params: dict[str, Any]
) -> dict[str, Any]:
    S = batched_targets.n_draws
    proto = make_router(family, random_state=0, **params)
    # Untimed warm-up: first use pays one-off imports (torch optimiser machinery, BLAS setup).
    clone(proto).fit(task.X_train, batched_targets.draw(0))

    t0, c0 = time.perf_counter(), time.process_time()
    # Draw s of fit_many is seeded draw_seed(0, s) (independent draws): the same here.
    sequential = [
        clone(proto)
        .set_params(random_state=draw_seed(0, s))
        .fit(task.X_train, batched_targets.draw(s))
        for s in range(S)
    ]
    t_seq, c_seq = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    batched = proto.fit_many(task.X_train, batched_targets)
    t_bat, c_bat = time.perf_counter() - t0, time.process_time() - c0

    X = task.X_test
    routes_seq = route_many(sequential, X)
    routes_bat = route_many(batched, X)
    disagreement = (routes_seq != routes_bat).mean(axis=1)
    score_diff = float(np.abs(_scores(sequential, X) - _scores(batched, X)).max())

    k = min(S, SEED_NOISE_DRAWS)
    routes_other = np.stack(
        [
            clone(proto)
            .set_params(random_state=draw_seed(1, s))
            .fit(task.X_train, batched_targets.draw(s))
            .route(X)
            for s in range(k)
        ]
    )
    seed_noise = float((routes_other != routes_seq[:k]).mean())

    return {
        "family": family,
        "draws": S,
        "sequential_s": t_seq,
        "batched_s": t_bat,
        "speedup": t_seq / t_bat,
        "sequential_cpu_s": c_seq,
        "batched_cpu_s": c_bat,
        "max_route_disagreement": float(disagreement.max()),
        "mean_route_disagreement": float(disagreement.mean()),
        "max_score_diff": score_diff,
        "seed_noise": seed_noise,
        "value_sequential": float(np.mean([task.value(r) for r in routes_seq])),
        "value_batched": float(np.mean([task.value(r) for r in routes_bat])),
    }


def format_table(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    cols = [
        ("family", "family", "{:<13}"),
        ("draws", "S", "{:>4}"),
        ("sequential_s", "seq s", "{:>8.2f}"),
        ("batched_s", "batch s", "{:>8.2f}"),
        ("speedup", "speed-up", "{:>8.1f}"),
        ("sequential_cpu_s", "seq cpu s", "{:>9.2f}"),
        ("batched_cpu_s", "batch cpu s", "{:>11.2f}"),
        ("max_route_disagreement", "max disagree", "{:>12.3f}"),
        ("max_score_diff", "max |Δscore|", "{:>12.2e}"),
        ("seed_noise", "seed noise", "{:>10.3f}"),
        ("value_sequential", "value seq", "{:>9.3f}"),
        ("value_batched", "value batch", "{:>11.3f}"),
    ]
    widths = [
        max(len(title), len(fmt.format(rows[0][key])) if rows else 0) for key, title, fmt in cols
    ]
    lines = [
        " ".join(
            title.rjust(w) if i else title.ljust(w)
            for i, ((_, title, _), w) in enumerate(zip(cols, widths, strict=True))
        )
    ]
    for row in rows:
        lines.append(
            " ".join(
                fmt.format(row[key]).rjust(w) if i else fmt.format(row[key]).ljust(w)
                for i, ((key, _, fmt), w) in enumerate(zip(cols, widths, strict=True))
            )
        )
    total_seq = sum(r["sequential_s"] for r in rows)
    total_bat = sum(r["batched_s"] for r in rows)
    cpu_seq = sum(r["sequential_cpu_s"] for r in rows)
    cpu_bat = sum(r["batched_cpu_s"] for r in rows)
    lines.append(
        f"total: sequential {total_seq:.1f} s, batched {total_bat:.1f} s, "
        f"speed-up {total_seq / max(total_bat, 1e-9):.1f}x (CPU time {cpu_seq:.1f} s vs "
        f"{cpu_bat:.1f} s, {cpu_seq / max(cpu_bat, 1e-9):.1f}x)  "
        f"(oracle value {header['oracle_value']:.3f}, random {header['random_value']:.3f})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and budgets (CI)")
    parser.add_argument("--draws", type=int, default=None, help="S (default 100; quick 3)")
    parser.add_argument("--n-train", type=int, default=None, help="default 120; quick 40")
    parser.add_argument("--n-test", type=int, default=None, help="default 200; quick 40")
    parser.add_argument("--dim", type=int, default=None, help="default 384; quick 16")
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument(
        "--families", default=",".join(available_routers()), help="comma-separated families"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args(argv)

    quick = args.quick
    S = args.draws or (3 if quick else 100)
    n_train = args.n_train or (40 if quick else 120)
    n_test = args.n_test or (40 if quick else 200)
    dim = args.dim or (16 if quick else 384)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(available_routers()))
    if unknown:
        parser.error(f"unknown families {unknown}; valid: {', '.join(available_routers())}")

    task = make_synthetic_task(
        n_train=n_train, n_test=n_test, n_features=dim, n_models=args.models, seed=args.seed
    )
    batched_targets = task.single_shot(S, seed=args.seed + 1)
    header = {
        "quick": quick,
        "draws": S,
        "n_train": n_train,
        "n_test": n_test,
        "dim": dim,
        "models": args.models,
        "oracle_value": task.oracle_value(),
        "random_value": task.random_value(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    print(
        f"routers: S={S} draws, {n_train} train × {args.models} models × {dim} dims, "
        f"{n_test} test queries{' (quick)' if quick else ''}",
        flush=True,
    )
    rows = []
    for family in families:
        params = QUICK_PARAMS.get(family, {}) if quick else {}
        rows.append(bench_family(family, task, batched_targets, params))
        print(
            f"  {family}: done ({rows[-1]['sequential_s']:.1f} s + {rows[-1]['batched_s']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    print(format_table(rows, header))
    result = {"config": header, "rows": rows}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
