"""Benchmark: the supervise stage on large observation stores, against DuckDB's group-by.

For each store size N (synthetic stores of :mod:`bench.supervise_store`: 3 datasets × Q queries
× 6 models × 5 rewrites × 5 decodes, 0.5% failed rows), each measured in its own subprocess
(CPU seconds = user + system of the child, every thread; peak RSS = the child's
``ru_maxrss`` read through ``RUSAGE_CHILDREN`` by a wrapper process):

* ``stage``: :func:`dars.tasks.supervise.supervise` — every table of every dataset, datasets one
  at a time (read, supervise, write, free), as ``dars supervise`` runs them;
* ``baseline`` (``--baseline-ref REF``): the same stage from the code of git ref ``REF``
  (exported with ``git archive``), e.g. the commit before this work;
* ``dars aggregate``: the DARS aggregate alone (μ, c̄, σ per (query, model)): read each
  dataset's train observations from the store and :func:`dars.supervision.full_dars`;
* ``duckdb group-by``: DuckDB's core group-by on the same Parquet files (mean score, sample
  std, mean cost, count per (dataset, query, model) of the ok train rows).

``CPU s`` is the whole child process (interpreter start and imports included); ``work CPU`` is
the process CPU time of the measured work alone (what the ratios compare).

Prints one table per N (CPU-s, peak RSS, ratios) and, with --out, writes the rows as JSON.

    python bench/bench_supervise.py --rows 10000000 --rows 50000000 --out /tmp/sup.json
    python bench/bench_supervise.py --rows 1000000 --baseline-ref b0b0711
    python bench/bench_supervise.py --quick --out /tmp/sup.json   # 200k rows; tests/CI

Stores are written under ``--store-dir`` (default: a temporary directory) and reused when
present with the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rows import machine, table  # noqa: E402

QUICK_ROWS = 200_000
COLUMNS = ("dataset", "query_id", "model", "rewrite_id", "decode_id", "score", "cost_usd")


# ------------------------------------------------------------------------------------------------
# children: the measured work
# ------------------------------------------------------------------------------------------------
def _child_stage(store: Path, n_boot: int) -> dict[str, Any]:
    from bench.supervise_store import experiment
    from dars.tasks.supervise import supervise

    summary = supervise(experiment(store), n_boot=n_boot)
    n_obs = summary.filter(summary["metric"] == "n_observations")["value"].sum()
    return {"n_observations": int(n_obs)}


def _child_aggregate(store: Path) -> dict[str, Any]:
    from bench.supervise_store import DATASETS, experiment
    from dars.supervision import full_dars
    from dars.tasks.supervise import load_train_observations

    exp = experiment(store)
    cells = 0
    for dataset in DATASETS:
        agg = full_dars(load_train_observations(exp, dataset), lam=exp.lam, beta=exp.beta)
        cells += agg.height
    return {"cells": cells}


def _child_duckdb(store: Path) -> dict[str, Any]:
    import duckdb

    from dars.storage import RunLayout

    files = str(RunLayout(store).observations_dir() / "**" / "*.parquet")
    con = duckdb.connect()
    cells = 0
    # One dataset at a time, as the stage reads them (the hive path carries the dataset).
    for (dataset,) in con.execute(
        f"SELECT DISTINCT dataset FROM read_parquet('{files}', hive_partitioning = true)"
    ).fetchall():
        out = con.execute(
            f"""
            SELECT dataset, query_id, model, count(*) AS n_obs, avg(score) AS q_mean,
                   stddev_samp(score) AS q_std, avg(cost_usd) AS c_mean
            FROM read_parquet('{files}', hive_partitioning = true)
            WHERE dataset = ? AND split = 'train' AND view = 'train' AND status = 'ok'
            GROUP BY dataset, query_id, model
            """,
            [dataset],
        ).to_arrow_table()
        cells += out.num_rows
    return {"cells": cells}


def _run_child(kind: str, store: Path, n_boot: int, dars_path: Path) -> None:
    sys.path.insert(0, str(dars_path))  # the baseline's package before this checkout's
    import dars

    if not Path(dars.__file__).resolve().is_relative_to(dars_path.resolve()):
        raise RuntimeError(f"imported {dars.__file__}, not the dars under {dars_path}")
    t0, c0 = time.perf_counter(), time.process_time()
    if kind in ("stage", "baseline"):
        info = _child_stage(store, n_boot)
    elif kind == "aggregate":
        info = _child_aggregate(store)
    else:
        info = _child_duckdb(store)
    info["wall_s"] = time.perf_counter() - t0
    info["work_cpu_s"] = time.process_time() - c0  # without the interpreter's start and imports
    print("RESULT " + json.dumps(info))


def _wrap(cmd: list[str], env: dict[str, str]) -> None:
    """Run ``cmd`` and print its resource use (RUSAGE_CHILDREN: this process has one child)."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stderr.write(proc.stderr[-4000:])
    result = next(
        (json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")),
        None,
    )
    print(
        "USAGE "
        + json.dumps(
            {
                "returncode": proc.returncode,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "result": result,
            }
        )
    )


# ------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------
def measure(kind: str, store: Path, *, n_boot: int, pythonpath: Path = ROOT) -> dict[str, Any]:
    """Run one measured child (fresh process) and return its CPU-s, peak RSS and result."""
    env = {
        **os.environ,
        "PYTHONPATH": str(pythonpath),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
    }
    child = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    child += ["--store", str(store), "--n-boot", str(n_boot), "--dars-path", str(pythonpath)]
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--wrap", "--", *child]
    proc = subprocess.run(wrapper, env=env, capture_output=True, text=True, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("USAGE ")), None)
    if line is None:
        raise RuntimeError(f"{kind}: the wrapper printed no usage; stderr:\n{proc.stderr[-3000:]}")
    usage = json.loads(line[6:])
    if usage["returncode"] != 0 or usage["result"] is None:
        raise RuntimeError(f"{kind} failed (exit {usage['returncode']}):\n{proc.stderr[-3000:]}")
    return usage


def ensure_store(store_dir: Path, n_rows: int) -> tuple[Path, int, float]:
    """The store of about ``n_rows`` rows under ``store_dir`` (written unless present)."""
    from bench.supervise_store import write_store

    store = store_dir / f"store-{n_rows}"
    marker = store / "bench-rows.json"
    if marker.is_file():
        return store, json.loads(marker.read_text())["rows"], 0.0
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
    rows = write_store(store, n_rows)
    marker.write_text(json.dumps({"rows": rows}))
    return store, rows, time.perf_counter() - t0


def export_ref(ref: str, into: Path) -> Path:
    """The ``dars`` package of git ref ``ref``, exported under ``into`` (a PYTHONPATH entry)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "dars"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def bench_size(
    store_dir: Path, n_rows: int, *, n_boot: int, baseline: Path | None
) -> list[dict[str, Any]]:
    store, rows, gen_s = ensure_store(store_dir, n_rows)
    runs: dict[str, dict[str, Any]] = {}
    runs["stage"] = measure("stage", store, n_boot=n_boot)
    if baseline is not None:
        runs["baseline"] = measure("baseline", store, n_boot=n_boot, pythonpath=baseline)
    runs["dars aggregate"] = measure("aggregate", store, n_boot=n_boot)
    runs["duckdb group-by"] = measure("duckdb", store, n_boot=n_boot)
    duck = runs["duckdb group-by"]["result"]["work_cpu_s"]
    stage = runs["stage"]["result"]["work_cpu_s"]
    out = []
    for name, usage in runs.items():
        out.append(
            {
                "n_rows": rows,
                "run": name,
                "cpu_s": round(usage["cpu_s"], 2),
                "work_cpu_s": round(usage["result"]["work_cpu_s"], 2),
                "wall_s": round(usage["result"]["wall_s"], 2),
                "peak_rss_mb": round(usage["peak_rss_mb"]),
                "x_duckdb_cpu": round(usage["result"]["work_cpu_s"] / duck, 2),
                "x_stage_cpu": round(usage["result"]["work_cpu_s"] / stage, 2),
                "store_write_s": round(gen_s, 1),
            }
        )
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    shown = [
        {
            "rows": f"{r['n_rows']:,}",
            "run": r["run"],
            "CPU s": r["cpu_s"],
            "work CPU": r["work_cpu_s"],
            "wall s": r["wall_s"],
            "peak MB": r["peak_rss_mb"],
            "x duckdb": r["x_duckdb_cpu"],
            "x stage": r["x_stage_cpu"],
        }
        for r in rows
    ]
    print(table(shown, list(shown[0])))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, action="append", help="store size (repeatable)")
    ap.add_argument("--quick", action="store_true", help=f"one store of {QUICK_ROWS:,} rows")
    ap.add_argument("--store-dir", type=Path, help="where stores are written and reused")
    ap.add_argument("--baseline-ref", help="git ref whose stage to measure beside this one")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (stage)")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dars-path", type=Path, default=ROOT, help=argparse.SUPPRESS)
    ap.add_argument("--wrap", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.wrap:
        _wrap(args.cmd, dict(os.environ))
        return {}
    if args.child:
        _run_child(args.child, args.store, args.n_boot, args.dars_path)
        return {}

    sizes = [QUICK_ROWS] if args.quick else (args.rows or [10_000_000])
    with tempfile.TemporaryDirectory(prefix="bench-supervise-") as tmp:
        store_dir = args.store_dir or Path(tmp)
        baseline = (
            export_ref(args.baseline_ref, Path(tmp) / "baseline") if args.baseline_ref else None
        )
        rows: list[dict[str, Any]] = []
        for n in sizes:
            part = bench_size(store_dir, n, n_boot=args.n_boot, baseline=baseline)
            print_table(part)
            print()
            rows += part
    meta = machine()
    result = {
        "machine": meta,
        "quick": args.quick,
        "rows": rows,
    }
    load = " ".join(f"{x:.2f}" for x in meta["load"])
    print(f"machine: {meta['cpus']} CPUs, load average {load}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
