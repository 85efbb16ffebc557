"""Benchmark: what the money ledger costs per call, on the simulated pool, side by side.

Runs the rewrite stage, then the decode stage of the same config in each mode, each into its
own fresh root (after an untimed warm-up collection), through the coroutines the Prefect tasks
run (no Prefect, so its start-up does not blur the comparison), 4 shards at a time:

* ``no ledger``: ``dars.tasks.collect`` given a null ledger (no reservation, journal, lease): the
  per-call work of the code before the ledger;
* ``ledger``: the real one (reservation before each call, settle + journal after, compaction marks).

and, beside them, the ledger's operations alone (reserve + settle with a journal row + compaction
mark per call, no LLM call). Reports decode calls/s and CPU ms per call (process CPU time, every
thread) and checks that both stores are identical.

    python bench/bench_ledger.py          # demo benchmarks, 6 models, 10 train + 4 test
    python bench/bench_ledger.py --quick --out /tmp/bench_ledger.json

Prints a table and, with --out, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_collect import KEY, bench_config  # noqa: E402


class NullLedger:
    """The ledger's interface doing nothing: collection as it was before the ledger."""

    def claim(self, *a: Any, **k: Any) -> None:
        return None

    def renew(self, *a: Any, **k: Any) -> None:
        pass

    def release(self, *a: Any, **k: Any) -> None:
        pass

    def holder(self, *a: Any, **k: Any) -> None:
        return None

    def expire_stale(self) -> int:
        return 0

    def pending(self, *a: Any, **k: Any) -> list:
        return []

    def lost_calls(self, *a: Any, **k: Any) -> dict:
        return {}

    def reserve(self, *a: Any, **k: Any) -> int:
        return 1

    def settle(self, *a: Any, **k: Any) -> None:
        return None

    def abandon(self, *a: Any, **k: Any) -> None:
        pass

    def mark_compacted(self, *a: Any, **k: Any) -> None:
        pass


def _decode_all(exp: Any, run_id: str) -> int:
    from dars.benchmarks.loading import load_splits
    from dars.llm.loop import run_sync
    from dars.plan import PARTITION, build_plan
    from dars.tasks.collect import decode_shard

    parts = build_plan(exp, load_splits(exp)).select(PARTITION).unique(maintain_order=True)

    async def go() -> int:
        sem = asyncio.Semaphore(4)  # 4 shards at a time, like 4 thread workers

        async def one(part: tuple) -> int:
            async with sem:
                return (await decode_shard(exp, *part, run_id=run_id)).ok

        return sum(await asyncio.gather(*(one(p) for p in parts.rows())))

    return run_sync(go())


def run_decode(exp: Any, *, null: bool) -> dict[str, Any]:
    import dars.tasks.collect as collect

    real = collect.ledger
    if null:
        collect.ledger = lambda root: NullLedger()  # type: ignore[assignment]
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        calls = _decode_all(exp, "bench")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        collect.ledger = real
    return {
        "mode": "no ledger" if null else "ledger",
        "calls": calls,
        "wall_s": round(wall, 3),
        "calls_per_s": round(calls / wall, 1),
        "cpu_ms_per_call": round(1000 * cpu / max(calls, 1), 3),
    }


def ledger_alone(root: Path, n: int) -> dict[str, Any]:
    """Reserve + settle (with a journal row the size of an observation) + compaction mark."""
    from dars.storage.ledger import CallRef, Ledger

    led = Ledger(root)
    payload = json.dumps({"response": "x" * 400, "prompt_sha256": "0" * 64, "score": 1.0})
    ids = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        ref = CallRef("bench", "decode", "d", "train", f"q{i}", "m", -1, 0, i // 100)
        cid = led.reserve(ref, 1e-4, cap_usd=1e9, ttl_s=600)
        assert cid is not None
        ids.append(
            led.settle(cid, ok=True, cost_usd=5e-5, tokens=100, attempt=1, journal=(ref, payload))
        )
        if len(ids) == 200:  # the checkpoint marks its rows compacted
            led.mark_compacted(ids)
            ids = []
    led.mark_compacted(ids)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {
        "mode": "ledger ops alone",
        "calls": n,
        "wall_s": round(wall, 3),
        "calls_per_s": round(n / wall, 1),
        "cpu_ms_per_call": round(1000 * cpu / n, 3),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = ["mode", "calls", "wall_s", "calls_per_s", "cpu_ms_per_call"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += [
        "  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny config (CI)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    import polars as pl

    from dars.benchmarks.loading import load_splits
    from dars.config import load_experiment
    from dars.llm.loop import run_sync
    from dars.plan import expected_rewrites
    from dars.storage import scan_observations
    from dars.tasks.collect import rewrite_shard

    size = (
        dict(n_train=3, n_test=1, models=2, train=(2, 2), shard_size=2)
        if args.quick
        else dict(n_train=10, n_test=4, models=6, train=(5, 5), shard_size=4)
    )
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        tmp_path = Path(tmp)
        config = bench_config(tmp_path / "bench.yaml", **size)  # type: ignore[arg-type]
        roots = {m: tmp_path / m for m in ("warm-up", "null", "ledger")}
        exps = {m: load_experiment(config, root=str(r)) for m, r in roots.items()}
        for exp in exps.values():  # the rewrites, untimed: the decode stage is what is compared
            shards = expected_rewrites(exp, load_splits(exp)).select("dataset", "split", "shard")
            for d, s, sh in shards.unique(maintain_order=True).rows():
                run_sync(rewrite_shard(exp, d, s, sh, run_id="bench"))
        # Untimed: pays the one-off costs (litellm import, scorer warm-up) before either mode.
        run_decode(exps["warm-up"], null=True)
        rows = [run_decode(exps["null"], null=True), run_decode(exps["ledger"], null=False)]
        rows.append(ledger_alone(tmp_path / "alone", rows[1]["calls"]))
        cols = [*KEY, "response", "score", "cost_usd"]
        a, b = (
            scan_observations(roots[m]).select(cols).collect().sort(KEY) for m in ("null", "ledger")
        )
        identical = a.equals(b) and a.height == rows[0]["calls"]
        assert isinstance(a, pl.DataFrame)
    base, led = rows[0], rows[1]
    result = {
        "rows": rows,
        "stores_identical": identical,
        "slowdown_pct": round(100 * (base["calls_per_s"] / led["calls_per_s"] - 1), 1),
        "cpu_overhead_ms_per_call": round(led["cpu_ms_per_call"] - base["cpu_ms_per_call"], 3),
    }
    print(format_table(rows))
    print(
        f"ledger vs no ledger: {result['slowdown_pct']:+.1f}% wall per call, "
        f"{result['cpu_overhead_ms_per_call']:+.3f} CPU ms per call; stores identical: {identical}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if not identical:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
