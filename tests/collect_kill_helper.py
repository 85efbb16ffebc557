"""Run collection shards in a fresh interpreter; ``tests/test_collect.py`` starts it as a
subprocess (to SIGKILL it mid-run, or to collect in another process with another hash seed).

    python tests/collect_kill_helper.py CONFIG ROOT
        the rewrite stage, then every decode shard of the plan (a whole collection)
    python tests/collect_kill_helper.py CONFIG ROOT --shard DATASET/SPLIT/MODEL/SHARD
        only that decode shard (its rewrites must be stored already)

``--checkpoint-rows N`` sets how many completed calls are buffered before a store write. Prints
one JSON line per shard report on stdout. Shards run one after another, through the same
coroutines (``dars.tasks.collect``) and process-wide event loop the Prefect tasks use.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a script: make the repository importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dars.benchmarks.loading import load_splits  # noqa: E402
from dars.config import load_experiment  # noqa: E402
from dars.llm.loop import run_sync  # noqa: E402
from dars.plan import PARTITION, build_plan, expected_rewrites  # noqa: E402
from dars.tasks.collect import CHECKPOINT_ROWS, decode_shard, rewrite_shard  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("root")
    ap.add_argument("--shard", help="DATASET/SPLIT/MODEL/SHARD: decode only this shard")
    ap.add_argument("--checkpoint-rows", type=int, default=CHECKPOINT_ROWS)
    args = ap.parse_args(argv)
    exp = load_experiment(args.config, root=args.root)
    if args.shard:
        try:
            dataset, split, model, shard = args.shard.split("/")
            decode = [(dataset, split, model, int(shard))]
        except ValueError:
            ap.error(f"--shard must be DATASET/SPLIT/MODEL/SHARD, got {args.shard!r}")
        rewrites = []
    else:
        splits = load_splits(exp)
        rewrites = (
            expected_rewrites(exp, splits)
            .select("dataset", "split", "shard")
            .unique(maintain_order=True)
            .rows()
        )
        decode = build_plan(exp, splits).select(PARTITION).unique(maintain_order=True).rows()
    for dataset, split, shard in rewrites:
        report = run_sync(rewrite_shard(exp, dataset, split, shard, run_id="helper"))
        print(json.dumps(report.to_dict()), flush=True)
    for dataset, split, model, shard in decode:
        report = run_sync(
            decode_shard(
                exp,
                dataset,
                split,
                model,
                shard,
                run_id="helper",
                checkpoint_rows=args.checkpoint_rows,
            )
        )
        print(json.dumps(report.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
