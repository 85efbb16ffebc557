"""Benchmark: latency of the deployment trigger chain, from a collect run's completion to the
report written, on a real Prefect server backed by SQLite or PostgreSQL.

For each backend it starts ``prefect server`` (``bench/prefect_stack.py``: SQLite in a
temporary PREFECT_HOME, PostgreSQL 15 through ``deploy/postgres-server.sh``), deploys
``deploy/prefect.yaml``, starts a process worker that asks for work every ``query`` seconds, and
runs the collect deployment on a tiny simulated config (a fresh root per repetition). From the
Prefect API and the report file it reports, per repetition: seconds from the collect run's end to
``report/index.html`` written, and the mean gap per trigger hop (upstream run's end → downstream
run's start: event, trigger, flow run created, picked up by the worker, process started, flow
loaded). Prefect's default worker poll is 10 s, which dominates each hop; the tests use 1 s.

    python bench/bench_trigger_chain.py                     # sqlite + postgres, poll 1 s and 10 s
    python bench/bench_trigger_chain.py --quick --out /tmp/chain.json   # sqlite, poll 1 s, once
    python bench/bench_trigger_chain.py --api-url http://127.0.0.1:4200/api  # a running stack

Prints a table and, with --out, writes the rows as JSON. PostgreSQL rows are skipped (with the
reason) where PostgreSQL is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _stack_module() -> Any:
    if "prefect_stack" in sys.modules:
        return sys.modules["prefect_stack"]
    spec = importlib.util.spec_from_file_location("prefect_stack", HERE / "prefect_stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prefect_stack"] = module
    spec.loader.exec_module(module)
    return module


ps = _stack_module()


def measure(stack: Any, workdir: Path, reps: int) -> list[dict[str, float]]:
    """``reps`` collect → report chains on ``stack``, each on a fresh root; one timing dict each
    (:func:`prefect_stack.chain_timing` plus ``collect_end_to_report_file_s``)."""
    from dars.storage.layout import RunLayout

    out = []
    for rep in range(reps):
        stamp = datetime.now(UTC).strftime("%H%M%S%f")
        root = workdir / f"runs/bench-{stamp}-{rep}"
        config = ps.tiny_config(workdir / f"bench-{stamp}.yaml", root)
        since = datetime.now(UTC) - timedelta(seconds=5)
        stack.run_deployment("collect/dars-collect", config=str(config), root=str(root))
        runs = stack.wait_chain(str(root), since)
        bad = {s: r.state_name for s, r in runs.items() if r.state_name != "Completed"}
        if bad or set(runs) != set(ps.CHAIN):
            raise RuntimeError(f"chain on {root} did not complete: {bad or sorted(runs)}")
        timing = ps.chain_timing(runs)
        html = RunLayout(root).report_file("index", "html")
        written = datetime.fromtimestamp(html.stat().st_mtime, UTC)
        timing["collect_end_to_report_file_s"] = (
            written - runs["collect"].end_time
        ).total_seconds()
        out.append(timing)
    return out


def summarise(backend: str, query_s: float | None, timings: list[dict[str, float]]) -> dict:
    """One table row: the chain latencies of ``timings`` (median, min, max over repetitions) and
    the mean gap per trigger hop."""
    total = [t["collect_end_to_report_file_s"] for t in timings]
    hops = [v for t in timings for k, v in t.items() if k.endswith("_start_s")]
    stages = {
        s: statistics.mean(t[f"{s}_run_s"] for t in timings)
        for s in ("supervise", "train", "evaluate", "report")
    }
    return {
        "backend": backend,
        "worker_poll_s": query_s,
        "reps": len(timings),
        "collect_end_to_report_s_median": statistics.median(total),
        "collect_end_to_report_s_min": min(total),
        "collect_end_to_report_s_max": max(total),
        "hop_gap_s_mean": statistics.mean(hops),
        "stage_runs_s_sum_mean": sum(stages.values()),
        "timings": timings,
    }


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'backend':<9} {'poll s':>6} {'reps':>4} {'collect→report s (median [min, max])':>38} "
        f"{'gap/hop s':>9} {'stage runs s':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if "skipped" in r:
            print(f"{r['backend']:<9} skipped: {r['skipped']}")
            continue
        span = (
            f"{r['collect_end_to_report_s_median']:.1f} "
            f"[{r['collect_end_to_report_s_min']:.1f}, {r['collect_end_to_report_s_max']:.1f}]"
        )
        poll = "given" if r["worker_poll_s"] is None else f"{r['worker_poll_s']:g}"
        print(
            f"{r['backend']:<9} {poll:>6} {r['reps']:>4} {span:>38} "
            f"{r['hop_gap_s_mean']:>9.1f} {r['stage_runs_s_sum_mean']:>12.1f}"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sqlite, poll 1 s, one chain (CI)")
    parser.add_argument("--backends", default=None, help="comma list of sqlite, postgres")
    parser.add_argument("--polls", default=None, help="worker poll seconds, comma list")
    parser.add_argument("--reps", type=int, default=None, help="chains per row; default 2")
    parser.add_argument(
        "--api-url",
        default=None,
        help="use a running server that has deploy/prefect.yaml deployed and a worker",
    )
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args(argv)
    backends = (args.backends or ("sqlite" if args.quick else "sqlite,postgres")).split(",")
    polls = [float(p) for p in (args.polls or ("1" if args.quick else "1,10")).split(",")]
    reps = args.reps or (1 if args.quick else 2)
    if set(backends) - {"sqlite", "postgres"}:
        parser.error(f"unknown backends {backends}; valid: sqlite, postgres")

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-chain-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
        if args.api_url:
            server = ps.PrefectServer(workdir)
            server.api_url = args.api_url
            stack = ps.Stack(server, workdir)
            rows.append(summarise("given", None, measure(stack, workdir, reps)))
        for backend in [] if args.api_url else backends:
            if backend == "postgres" and (reason := ps.postgres_missing()):
                rows.append({"backend": backend, "skipped": reason})
                continue
            with ps.PrefectServer(workdir / backend, backend) as server:
                for poll in polls:
                    with ps.Stack(server, workdir / backend, query_seconds=poll) as stack:
                        if poll == polls[0]:
                            stack.deploy()
                        stack.start_worker()
                        rows.append(summarise(backend, poll, measure(stack, workdir, reps)))
    print(
        f"trigger chain collect → supervise → train → evaluate → report, tiny simulated config"
        f"{' (quick)' if args.quick else ''}; {platform.node()}, {platform.python_version()}"
    )
    print_table(rows)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2, default=str))
    return rows


if __name__ == "__main__":
    main()
