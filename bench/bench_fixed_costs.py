"""Benchmark: the fixed costs of a dars command that has (almost) nothing to do.

Rows, each measured in a fresh process, side by side in one run:

* ``collect no-op``: ``dars collect`` on a root where every planned call is stored. ``pre-check``
  is the CLI now (it proves from the store that nothing is left and never starts Prefect);
  ``--run-flow, temporary server`` is the path every collect took before (the collect flow,
  hence Prefect's temporary API server started by the CLI); ``--run-flow, running server``
  is the same flow against a Prefect server started once beforehand (``PREFECT_API_URL``,
  which the CLI now names in one line). The running server's own start is a row too.
* ``encoder``: the train embedding path (the run's embedding cache) with the default sentence
  encoder (MiniLM), in one process: ``64 uncached, cold process`` fills the cache (imports
  torch, loads the model); then the process's shared encoder meets ``all cached`` texts (the
  model must not load) and ``one uncached`` text (it loads, once; torch is imported by then).
  ``cached, loaded eagerly (before)`` is a fresh process meeting cached texts with the model
  loaded up front, as ``make_encoder`` did before.

``--quick`` leaves out the running server and eager rows (each costs tens of seconds on a
loaded machine) and uses a tinier store.

Wall seconds and CPU seconds (user + system of the process and the children it waited for) per
row. The store is filled without Prefect (the shards' coroutines called directly), so the bench
measures the no-op, not the collection.

    python bench/bench_fixed_costs.py                  # all rows, a store of ~1,000 calls
    python bench/bench_fixed_costs.py --quick --out /tmp/fixed.json   # the rows CI runs

Prints a table and, with --out, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench.bench_collect, bench.prefect_stack

from bench.bench_collect import bench_config  # noqa: E402
from bench.prefect_stack import PrefectServer, base_env  # noqa: E402
from bench.rows import table, write_rows  # noqa: E402

CLI = "import sys; from dars.cli import app; sys.argv[0] = 'dars'; app(prog_name='dars')"


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``args`` to completion; wall and CPU seconds, exit code and output."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": _children_cpu() - cpu0,
        "code": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }


def fill_store(config: Path, root: Path) -> None:
    """Collect every planned call of ``config`` into ``root`` without Prefect (the shard
    coroutines the flows' tasks run), then the simulator's truth."""
    code = f"""
from dars.env import apply_offline_defaults; apply_offline_defaults()
from dars.config import load_experiment
from dars.llm.loop import run_sync
from dars.tasks.collect import (decode_shard, pending_decode_shards, pending_rewrite_shards,
    rewrite_shard, store_truth)
exp = load_experiment({str(config)!r}, root={str(root)!r})
for s in pending_rewrite_shards(exp)[0]:
    run_sync(rewrite_shard(exp, s['dataset'], s['split'], int(s['shard']), run_id='bench'))
for s in pending_decode_shards(exp)[0]:
    run_sync(decode_shard(exp, s['dataset'], s['split'], s['model'], int(s['shard']),
        run_id='bench'))
for b in exp.collected:
    store_truth(exp, b.name)
"""
    out = timed([sys.executable, "-c", code], base_env())
    if out["code"] != 0:
        raise RuntimeError(f"filling the store failed:\n{out['stderr'][-3000:]}")


def collect_rows(config: Path, root: Path, workdir: Path, running: bool) -> list[dict[str, Any]]:
    """The no-op collect rows (see the module docstring); ``running``: with a running server."""
    cmd = [sys.executable, "-c", CLI, "collect", "--config", str(config), "--root", str(root)]
    # The temporary server keeps its database in PREFECT_HOME: a fresh one, as on a new machine.
    temp_env = base_env(PREFECT_HOME=str(workdir / "prefect-temporary"))
    runs = [
        ("pre-check", [], temp_env),
        ("--run-flow, temporary server", ["--run-flow"], temp_env),
    ]
    rows = []
    with contextlib.ExitStack() as stack:
        if running:
            server = stack.enter_context(PrefectServer(workdir / "prefect-running", "sqlite"))
            rows.append(
                {
                    "row": "prefect server start (once)",
                    "wall_s": server.startup_s,
                    "cpu_s": None,
                    "note": "`prefect server start`, until /api/health answers",
                }
            )
            runs.append(("--run-flow, running server", ["--run-flow"], server.env()))
        for name, extra, env in runs:
            out = timed([*cmd, *extra], env)
            if out["code"] != 0:
                raise RuntimeError(f"dars collect ({name}) failed:\n{out['stdout'][-2000:]}")
            said = [
                line
                for line in out["stdout"].splitlines()
                if line.startswith(("nothing to collect", "using the Prefect server"))
            ]
            rows.append(
                {
                    "row": f"collect no-op: {name}",
                    "wall_s": out["wall_s"],
                    "cpu_s": out["cpu_s"],
                    "note": said[0][:70] if said else "",
                }
            )
    return rows


ENCODE = """
import json, sys, time
from dars.env import apply_offline_defaults; apply_offline_defaults()
from dars.routers.encoders import SentenceTransformerEncoder, shared_encoder
from dars.storage.embeddings import EmbeddingCache
mode, path = sys.argv[1], sys.argv[2]
texts = [f"Question {i}: what is {i} times {i + 1}?" for i in range(64)]


def timed(row, make, texts):
    t0, c0 = time.perf_counter(), time.process_time()
    enc = make()
    cache = EmbeddingCache(path)
    cache.embed(enc, texts)
    print(json.dumps({"row": row, "wall_s": time.perf_counter() - t0,
                      "cpu_s": time.process_time() - c0, "loaded": enc.loaded,
                      "encoded": cache.last_encoded}))


if mode == "eager":  # the path of before: make_encoder loaded the model up front
    timed("cached, loaded eagerly (before)", lambda: SentenceTransformerEncoder().load(), texts)
else:
    # A cold process fills the cache with its own encoder object; the process's shared
    # encoder (what the train and collect stages use) then meets only cached texts, then one
    # new text.
    timed("64 uncached, cold process", lambda: SentenceTransformerEncoder(), texts)
    timed("all cached", shared_encoder, texts)
    timed("one uncached", shared_encoder, [*texts, "A question no earlier run has seen."])
"""


def encoder_rows(workdir: Path, eager: bool) -> list[dict[str, Any]]:
    """The encoder rows: one process that fills the cache, then meets cached texts and one new
    one; with ``eager``, a fresh process that loads the model up front as before."""
    path = workdir / "embeddings.parquet"
    rows = []
    for mode in ("lazy", *(["eager"] if eager else [])):
        out = timed([sys.executable, "-c", ENCODE, mode, str(path)], base_env())
        if out["code"] != 0:
            raise RuntimeError(f"encoder ({mode}) failed:\n{out['stderr'][-2000:]}")
        for line in out["stdout"].strip().splitlines():
            res = json.loads(line)
            note = f"model loaded: {res['loaded']}, {res['encoded']} text(s) encoded"
            rows.append(
                {
                    "row": f"encoder: {res['row']}",
                    "wall_s": res["wall_s"],
                    "cpu_s": res["cpu_s"],
                    "note": note,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ["row", "wall_s", "cpu_s", "note"]
    print(table(rows, cols))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="tiny store; no running-server and eager rows"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-fixed-") as tmp:
        work = Path(tmp)
        size = (
            dict(n_train=2, n_test=1, models=1, train=(1, 1), shard_size=50)
            if args.quick
            else dict(n_train=10, n_test=4, models=3, train=(3, 3), shard_size=50)
        )
        config = bench_config(work / "bench.yaml", **size)  # type: ignore[arg-type]
        root = work / "root"
        fill_store(config, root)
        rows = collect_rows(config, root, work, running=not args.quick)
        rows += encoder_rows(work, eager=not args.quick)
    print_table(rows)
    write_rows(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
