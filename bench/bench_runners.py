"""Benchmark: what one shard task costs on each task runner, side by side in one run.

The runners of ``dars.flows.runners``: ``thread`` (a thread pool in the flow's process), ``dask``
(prefect-dask's DaskTaskRunner on a LocalCluster of ``--workers`` processes, one thread each) and
``process`` (Prefect's process pool), all with the same number of workers (default 2, the cores
of the project machine). Each timed run is one ``decode_flow`` into a fresh root whose rewrites an
untimed thread ``rewrite_flow`` stored first, on the simulated pool (demo_mc, 2 models):

* **tiny shards** (one call each: 1 x 1 train protocol, 1 test decode, ``shard_size`` 1; 8 train
  queries, quick 2), at two sizes: 1 benchmark x 2 models and 2 benchmarks x 6 models; the
  slope between them is the time each extra shard adds (Prefect task run, runner hand-off, one
  simulated call, storing its row), the intercept the fixed cost (flow run, starting the
  LocalCluster or the process pool, planning);
* **normal shards** (``shard_size`` 50 queries x 5 x 5 train calls; quick: 10 x 3 x 3): calls/s.

The simulated pool is deterministic, so every runner's store must equal the thread runner's
(key, response, score, cost); the script checks that and exits with status 1 if not. An untimed
warm-up collection first pays the parent process's one-off costs (Prefect's temporary server
unless ``PREFECT_API_URL`` is set, imports).

    python bench/bench_runners.py                 # 18 and 108 tiny shards, 6 normal shards
    python bench/bench_runners.py --quick --out /tmp/bench_runners.json
    python bench/bench_runners.py --quick --runners thread,dask

Prints the tables and, with --out, writes the rows as JSON.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_collect import COMPARED, DEMO, KEY  # noqa: E402
from bench.bench_local_server import _table as table  # noqa: E402

RUNNERS = ("thread", "dask", "process")


def runner_config(
    path: Path,
    *,
    n_train: int,
    shard_size: int,
    train: tuple[int, int],
    benchmarks: tuple[str, ...] = ("demo_mc",),
    models: int = 2,
) -> Path:
    """configs/demo.yaml cut to ``benchmarks`` with ``n_train`` train queries and 1 test query
    each, the first ``models`` simulated models, ``train`` = (rewrites, decodes), one decode per
    test query (no test rewrites), ``shard_size`` queries per shard, TF-IDF rewrite similarity."""
    data = yaml.safe_load(DEMO.read_text())
    data["benchmarks"] = [
        {**b, "n_train": n_train, "n_test": 1, "options": {"n_items": n_train + 1}}
        for b in data["benchmarks"]
        if b["name"] in benchmarks
    ]
    data["pool"]["models"] = data["pool"]["models"][:models]
    data["protocol"].update(
        train_rewrites=train[0], train_decodes=train[1], test_rewrites=0, test_decodes=1
    )
    data.update(shard_size=shard_size, encoder="tfidf")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def timed_decode(config: Path, root: Path, runner: str, workers: int) -> dict[str, Any]:
    """Store the rewrites of ``config`` in ``root`` (threads, untimed), then time one
    ``decode_flow`` on ``runner``; one row: shard tasks, decode calls, wall seconds."""
    from dars.config import load_experiment
    from dars.flows.collect import decode_flow, rewrite_flow

    exp = load_experiment(config, root=str(root))
    rewrite_flow(exp, None, workers, "thread")
    t0 = time.perf_counter()
    result = decode_flow(exp, None, workers, runner)
    wall = time.perf_counter() - t0
    if result["failures"]:
        raise RuntimeError(f"{runner}: decode failed: {result['failures'][0]}")
    return {
        "runner": runner,
        "workers": workers,
        "shards": result["tasks"],
        "calls": result["ok"],
        "wall_s": wall,
        "ms_per_shard": 1000 * wall / max(result["tasks"], 1),
        "calls_per_s": result["ok"] / wall,
    }


def overheads(small: list[dict[str, Any]], large: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per runner, from its tiny-shard runs at two sizes: ``per_shard_ms`` = the wall time one
    more shard adds (slope), ``fixed_s`` = the wall time of a run with no shard (intercept),
    ``extra_per_shard_ms`` = per_shard_ms minus the thread runner's (when measured)."""
    out = []
    for s, big in zip(small, large, strict=True):
        slope = (big["wall_s"] - s["wall_s"]) / (big["shards"] - s["shards"])
        out.append(
            {
                "runner": s["runner"],
                "per_shard_ms": 1000 * slope,
                "fixed_s": s["wall_s"] - slope * s["shards"],
            }
        )
    base = next((o["per_shard_ms"] for o in out if o["runner"] == "thread"), None)
    for o in out:
        o["extra_per_shard_ms"] = None if base is None else o["per_shard_ms"] - base
    return out


def stores_identical(a: Path, b: Path) -> bool:
    """The two roots hold the same observations (key, response, score, cost)."""
    from dars.storage import scan_observations

    fa = scan_observations(a).select(COMPARED).collect().sort(KEY)
    fb = scan_observations(b).select(COMPARED).collect().sort(KEY)
    return fa.height > 0 and fa.equals(fb)


def format_report(result: dict[str, Any]) -> str:
    """The printed tables of a bench result (see :func:`main`)."""

    def runs(rows: list[dict[str, Any]]) -> list[list[str]]:
        return [
            [
                r["runner"],
                str(r["shards"]),
                str(r["calls"]),
                f"{r['wall_s']:.1f}",
                f"{r['ms_per_shard']:.0f}",
                f"{r['calls_per_s']:.0f}",
            ]
            for r in rows
        ]

    head = ["runner", "shards", "calls", "wall s", "ms/shard", "calls/s"]
    tiny = result["tiny"]
    extra = [
        [
            o["runner"],
            f"{o['per_shard_ms']:.0f}",
            "-" if o["extra_per_shard_ms"] is None else f"{o['extra_per_shard_ms']:+.0f}",
            f"{o['fixed_s']:.1f}",
        ]
        for o in result["overhead"]
    ]
    return "\n\n".join(
        [
            "tiny shards (1 call each), small then large:\n"
            + table(head, runs(tiny["small"] + tiny["large"])),
            "per-shard overhead (slope between the two sizes):\n"
            + table(["runner", "ms/shard", "vs thread", "fixed s"], extra),
            f"normal shards ({result['config']['normal']['shard_size']} queries x "
            f"{'x'.join(map(str, result['config']['normal']['train']))} calls):\n"
            + table(head, runs(result["normal"])),
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--workers", type=int, default=2, help="workers of every runner")
    parser.add_argument(
        "--runners",
        default=",".join(RUNNERS),
        help=f"comma-separated, from: {', '.join(RUNNERS)}",
    )
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args(argv)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    unknown = sorted(set(runners) - set(RUNNERS))
    if unknown or not runners:
        parser.error(f"unknown runners {unknown}; valid: {', '.join(RUNNERS)}")

    quick = args.quick
    # Tiny shards of one call each: (n_train + 1 test query) shards per (benchmark, model). A
    # decode shard reads every shard file of its partition, so the two sizes differ in how many
    # partitions they have (benchmarks x models), never in shards per partition: the slope is
    # the runner's cost of a shard, not the store's.
    per_partition = 2 if quick else 8
    sizes = {
        "small": {"benchmarks": ("demo_mc",), "models": 2},
        "large": {"benchmarks": ("demo_mc", "demo_span"), "models": 6},
    }
    normal = {"n_train": 20, "shard_size": 10, "train": (3, 3)}
    if not quick:
        normal = {"n_train": 100, "shard_size": 50, "train": (5, 5)}
    tiny: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
    normal_rows: list[dict[str, Any]] = []
    identical = True
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-runners-") as tmp:
        tmp_path = Path(tmp)
        warm = runner_config(tmp_path / "warm.yaml", n_train=1, shard_size=1, train=(1, 1))
        t0 = time.perf_counter()
        timed_decode(warm, tmp_path / "warm", "thread", 1)
        print(f"  warm-up: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        plans = [
            (
                f"tiny-{name}",
                runner_config(
                    tmp_path / f"tiny-{name}.yaml",
                    n_train=per_partition,
                    shard_size=1,
                    train=(1, 1),
                    **size,
                ),
                tiny[name],
            )
            for name, size in sizes.items()
        ]
        plans.append(("normal", runner_config(tmp_path / "normal.yaml", **normal), normal_rows))
        for label, config, rows in plans:
            for runner in runners:
                root = tmp_path / f"{label}-{runner}"
                rows.append(timed_decode(config, root, runner, args.workers))
                print(
                    f"  {label} {runner}: {rows[-1]['wall_s']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
                identical &= stores_identical(tmp_path / f"{label}-{runners[0]}", root)
    result = {
        "config": {
            "quick": quick,
            "workers": args.workers,
            "runners": runners,
            "tiny": {"train_queries": per_partition, **sizes},
            "normal": normal,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            # The machine is shared: its 1-minute load average before and after the runs.
            "load_avg_1m": [load_before[0], os.getloadavg()[0]],
        },
        "tiny": tiny,
        "overhead": overheads(tiny["small"], tiny["large"]),
        "normal": normal_rows,
        "stores_identical": identical,
    }
    print(format_report(result))
    print(f"stores identical across runners: {'yes' if identical else 'NO'}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    if not identical:
        raise SystemExit("the runners' stores differ: the simulated pool is not deterministic")
    return result


if __name__ == "__main__":
    main()
