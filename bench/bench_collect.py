"""Benchmark: collection throughput on the simulated pool, Prefect thread workers vs processes.

For each mode it runs ``collect_flow`` (rewrite stage, then decode stage) on the same config into
its own fresh temporary root, and reports the calls made (rewriter + decode), the wall time and
calls per second. The simulated pool is deterministic, so both stores must be identical; the
script checks that and exits with status 1 if not. An untimed warm-up collection (threads, tiny)
first pays the one-off costs of the parent process: the Prefect server (a temporary one unless
``PREFECT_API_URL`` is set), importing litellm, math-verify's first use. Process workers are
started per flow run (each stage spawns its pool), so their start-up is part of their time.

    python bench/bench_collect.py          # demo benchmarks, 6 models, 10 train + 4 test each
    python bench/bench_collect.py --quick --out /tmp/bench_collect.json   # tiny config
    python bench/bench_collect.py --quick --modes threads    # what the test suite runs

Prints a table and, with --out, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
KEY = ["dataset", "split", "query_id", "model", "rewrite_id", "decode_id"]
COMPARED = [*KEY, "response", "score", "cost_usd"]


def bench_config(
    path: Path, *, n_train: int, n_test: int, models: int, train: tuple[int, int], shard_size: int
) -> Path:
    """configs/demo.yaml resized: ``n_train``/``n_test`` queries per benchmark, the first
    ``models`` simulated models, ``train`` = (rewrites, decodes), TF-IDF rewrite similarity (the
    bench measures calls, not the sentence encoder)."""
    data = yaml.safe_load(DEMO.read_text())
    data["benchmarks"] = [
        {**b, "n_train": n_train, "n_test": n_test, "options": {"n_items": n_train + n_test}}
        for b in data["benchmarks"]
    ]
    data["pool"]["models"] = data["pool"]["models"][:models]
    data["protocol"].update(train_rewrites=train[0], train_decodes=train[1])
    data.update(shard_size=shard_size, encoder="tfidf")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_mode(config: Path, root: Path, *, processes: bool, workers: int) -> dict[str, Any]:
    """One timed ``collect_flow`` into an empty ``root``; one row of the table."""
    from dars.config import load_experiment
    from dars.flows.collect import collect_flow
    from dars.tasks.collect import estimate_budget

    exp = load_experiment(config, root=str(root))
    calls = int(estimate_budget(exp)["calls"].sum())
    t0 = time.perf_counter()
    result = collect_flow(exp, None, workers, "process" if processes else "thread")
    wall = time.perf_counter() - t0
    dec = result["decode"]
    if dec["failures"] or result["rewrite"]["failures"]:
        raise RuntimeError(f"collection failed: {dec['failures'] or result['rewrite']['failures']}")
    return {
        "mode": "processes" if processes else "threads",
        "workers": workers,
        "calls": calls,
        "decode_calls": dec["ok"],
        "tasks": dec["tasks"] + result["rewrite"]["tasks"],
        "wall_s": wall,
        "calls_per_s": calls / wall,
    }


def stores_identical(a: Path, b: Path) -> bool:
    from dars.storage import scan_observations

    fa = scan_observations(a).select(COMPARED).collect().sort(KEY)
    fb = scan_observations(b).select(COMPARED).collect().sort(KEY)
    return fa.height > 0 and fa.equals(fb)


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("mode", "mode", "{:<9}"),
        ("workers", "workers", "{:>7}"),
        ("calls", "calls", "{:>6}"),
        ("tasks", "tasks", "{:>5}"),
        ("wall_s", "wall s", "{:>7.1f}"),
        ("calls_per_s", "calls/s", "{:>7.0f}"),
    ]
    widths = [max(len(t), *(len(f.format(r[k])) for r in rows)) for k, t, f in cols]
    lines = [
        " ".join(
            t.ljust(w) if i == 0 else t.rjust(w)
            for i, ((_, t, _), w) in enumerate(zip(cols, widths, strict=True))
        )
    ]
    for r in rows:
        lines.append(
            " ".join(
                f.format(r[k]).ljust(w) if i == 0 else f.format(r[k]).rjust(w)
                for i, ((k, _, f), w) in enumerate(zip(cols, widths, strict=True))
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny config (CI)")
    parser.add_argument(
        "--n-train", type=int, default=None, help="per benchmark; default 10, quick 2"
    )
    parser.add_argument(
        "--n-test", type=int, default=None, help="per benchmark; default 4, quick 1"
    )
    parser.add_argument("--models", type=int, default=None, help="default 6, quick 2")
    parser.add_argument("--thread-workers", type=int, default=4)
    parser.add_argument("--process-workers", type=int, default=2)
    parser.add_argument(
        "--modes", default="threads,processes", help="comma-separated: threads, processes"
    )
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - {"threads", "processes"})
    if unknown or not modes:
        parser.error(f"unknown modes {unknown}; valid: threads, processes")

    quick = args.quick
    size = {
        "n_train": args.n_train or (2 if quick else 10),
        "n_test": args.n_test or (1 if quick else 4),
        "models": args.models or (2 if quick else 6),
        "train": (2, 2) if quick else (5, 5),
        "shard_size": 2 if quick else 5,
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        tmp_path = Path(tmp)
        config = bench_config(tmp_path / "bench.yaml", **size)
        warm = bench_config(
            tmp_path / "warm.yaml", n_train=1, n_test=1, models=1, train=(1, 1), shard_size=1
        )
        print(
            f"collect: {size['n_train']} train + {size['n_test']} test queries x 3 benchmarks x "
            f"{size['models']} models, train {size['train'][0]}x{size['train'][1]}"
            f"{' (quick)' if quick else ''}",
            flush=True,
        )
        t0 = time.perf_counter()
        run_mode(warm, tmp_path / "warm", processes=False, workers=1)
        warm_s = time.perf_counter() - t0
        print(f"  warm-up: {warm_s:.1f} s", file=sys.stderr, flush=True)
        workers = {"threads": args.thread_workers, "processes": args.process_workers}
        for mode in modes:
            rows.append(
                run_mode(
                    config,
                    tmp_path / mode,
                    processes=mode == "processes",
                    workers=workers[mode],
                )
            )
            print(f"  {mode}: {rows[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        # Every mode's store against the first one's (trivially true for a single mode).
        identical = all(stores_identical(tmp_path / modes[0], tmp_path / m) for m in modes)
    print(format_table(rows))
    if len(modes) > 1:
        print(f"stores identical across modes: {'yes' if identical else 'NO'}")
    result = {
        "config": {
            **size,
            "quick": quick,
            "modes": modes,
            "warmup_s": warm_s,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "polars": pl.__version__,
        },
        "rows": rows,
        "stores_identical": identical,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    if not identical:
        raise SystemExit(
            "the thread and process collections differ: the simulated pool is not deterministic"
        )
    return result


if __name__ == "__main__":
    main()
