"""Collect a whole experiment the way the flows do, without Prefect; ``money.py`` starts it as a
subprocess to SIGKILL it, to run two at once on one root, or to run it with ``--processes``.

    python tests/reliability/money_helper.py CONFIG ROOT [--processes] [--workers N]
                                             [--run-id ID] [--cap USD]

Every rewrite shard, then every decode shard of the plan, on a pool of ``--workers`` threads
(default) or spawned processes, each shard through ``run_sync`` of the same coroutines the Prefect
tasks run. ``--cap`` sets the spend cap where the flows set it. Prints one JSON line: the summed
shard reports. ``DARS_CODE`` (a checkout) selects the ``dars`` it imports, so the same scenario
runs against another branch (``money.py`` uses it to measure main).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, os.environ.get("DARS_CODE") or str(Path(__file__).resolve().parents[2]))

from dars.benchmarks.loading import load_splits  # noqa: E402
from dars.config import load_experiment  # noqa: E402
from dars.llm.loop import run_sync  # noqa: E402
from dars.plan import PARTITION, build_plan, expected_rewrites  # noqa: E402
from dars.tasks import collect  # noqa: E402

_EXP: Any = None


def _init(config: str, root: str, cap: float | None) -> None:
    global _EXP
    _EXP = load_experiment(config, root=root)
    if cap is not None:
        _EXP = _EXP.model_copy(update={"spend_cap_usd": cap})


def _rewrite(args: tuple[str, str, int, str]) -> dict[str, Any]:
    dataset, split, shard, run_id = args
    return run_sync(collect.rewrite_shard(_EXP, dataset, split, shard, run_id=run_id)).to_dict()


def _decode(args: tuple[str, str, str, int, str]) -> dict[str, Any]:
    dataset, split, model, shard, run_id = args
    report = run_sync(collect.decode_shard(_EXP, dataset, split, model, shard, run_id=run_id))
    return report.to_dict()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("root")
    ap.add_argument("--processes", action="store_true")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--run-id", default="helper")
    ap.add_argument("--cap", type=float)
    args = ap.parse_args(argv)
    _init(args.config, args.root, args.cap)
    if args.cap is not None:
        try:  # before the ledger, the cap lived in the flow process's counters
            collect.reset_progress(spend_cap_usd=args.cap)  # type: ignore[call-arg]
        except TypeError:
            collect.reset_progress()
    splits = load_splits(_EXP)
    rw = (
        expected_rewrites(_EXP, splits)
        .select("dataset", "split", "shard")
        .unique(maintain_order=True)
    )
    dec = build_plan(_EXP, splits).select(PARTITION).unique(maintain_order=True)
    pool: Executor
    if args.processes:
        # spawn, as Prefect's process runner: a fork after polars ran can deadlock the child.
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            args.workers,
            mp_context=ctx,
            initializer=_init,
            initargs=(args.config, args.root, args.cap),
        )
    else:
        pool = ThreadPoolExecutor(args.workers)
    with pool:
        reports = list(pool.map(_rewrite, [(*r, args.run_id) for r in rw.rows()]))
        reports += list(pool.map(_decode, [(*r, args.run_id) for r in dec.rows()]))
    keys = ("ok", "failed", "not_run", "leased", "recovered", "already_done")
    print(json.dumps({k: sum(int(r.get(k) or 0) for r in reports) for k in keys}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
