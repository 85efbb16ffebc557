"""Benchmark: what one model call costs the collection client, against the bare litellm loop.

Against a local OpenAI-compatible stub server (``bench/stub_server.py``: 50 ms per answer, its
own process) it times, in one worker process and side by side (rounds of every row, each after
an untimed warm-up), ``--calls`` chat completions at ``--concurrency`` in flight:

* ``litellm bare``: a plain ``litellm.acompletion`` loop (the baseline of every ratio);
* ``+ unlogged``: the same inside litellm's ``internal_sub_call`` marker (no success/failure
  logging, callbacks or spend bookkeeping: the caller logs and bills);
* ``+ no cost calc``: the same with litellm's per-call ``response_cost_calculator`` skipped
  (dars prices tokens itself);
* ``+ both``: both switches, what ``dars.llm`` does on its litellm route;
* ``dars litellm``: ``LLMClient.generate`` with ``transport: litellm`` (limits, retries, cost);
* ``dars http``: ``LLMClient.generate`` with ``transport: http`` (one aiohttp session);
* ``aiohttp raw``: a bare aiohttp loop (the floor: the cost of HTTP itself);

then the bare loop and both dars transports on 2 worker processes at once (each with the same
calls and concurrency; calls/s is all calls over the span from the first start to the last end).
CPU ms per call is the worker's CPU time (``time.process_time``: all its threads) per call; for 2
processes the sum of both workers'.

Then the simulated pool (in process, no server): ``LLMClient.generate`` on ``dars-sim`` models
through litellm (``transport: litellm``) and on the direct path (``transport: auto``, the
default), CPU ms per call, and what the demo's 40k calls cost at that rate; then the collect
stage's tasks (rewrites, then decodes; no Prefect) on configs/demo.yaml (41,880 calls; quick: a
small cut of it) on both paths: the whole collection's CPU seconds. Both paths must return the
same generations and store the same rows (the script exits with status 1 if not).

    python bench/bench_client.py                     # 2000 calls per row, 3 rounds
    python bench/bench_client.py --quick --out /tmp/bench_client.json   # what the test runs

Prints the tables and, with --out, writes every row as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench.rows import machine, table  # noqa: E402
from bench.stub_server import serve_stub  # noqa: E402

ROWS = (
    "litellm bare",
    "+ unlogged",
    "+ no cost calc",
    "+ both",
    "dars litellm",
    "dars http",
    "aiohttp raw",
)
PROCESS_ROWS = ("litellm bare", "dars litellm", "dars http")
MESSAGES = [
    {"role": "system", "content": "Answer with the letter of the correct option."},
    {"role": "user", "content": "Which planet is largest? A) Mars B) Jupiter C) Venus D) Earth"},
]
MAX_TOKENS, TIMEOUT_S = 64, 30.0
#: Calls the demo config makes (configs/demo.yaml: rewrites and decodes of every model).
DEMO_CALLS = 40_000


# --------------------------------------------------------------------------------------------
# one row: `calls` calls at `concurrency`, in this process


def _caller(row: str, api_base: str) -> Any:
    """An async function making one call the way ``row`` does."""
    import litellm

    from dars.config import ModelSpec
    from dars.llm import GenParams, LLMClient, get_litellm
    from dars.llm import client as client_mod

    get_litellm()  # dars's setup (installs the cost-calculation skip, scoped to dars calls)
    kwargs = {
        "model": "openai/stub",
        "messages": MESSAGES,
        "api_base": api_base,
        "api_key": "no-key",
        "timeout": TIMEOUT_S,
        "num_retries": 0,
        "max_retries": 0,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.7,
        "top_p": 0.95,
    }
    if row in ("litellm bare", "+ unlogged", "+ no cost calc", "+ both"):
        unlogged = row in ("+ unlogged", "+ both")
        no_cost = row in ("+ no cost calc", "+ both")

        async def call() -> Any:
            token = client_mod._OUR_CALL.set(True) if no_cost else None
            # (litellm's own aiohttp sessions live as long as litellm's client cache)
            try:
                if unlogged:
                    with client_mod._unlogged():
                        return await litellm.acompletion(**kwargs)
                return await litellm.acompletion(**kwargs)
            finally:
                if token is not None:
                    client_mod._OUR_CALL.reset(token)

        call.aclose = _noop  # type: ignore[attr-defined]
        return call
    if row in ("dars litellm", "dars http"):
        spec = ModelSpec(
            name="stub",
            litellm_model="openai/stub",
            api_base=api_base,
            input_price_per_m=1.0,
            output_price_per_m=2.0,
            max_concurrency=1024,
            transport=row.split()[1],
        )
        params = GenParams(max_tokens=MAX_TOKENS, timeout_s=TIMEOUT_S, max_retries=0)
        client = LLMClient()

        async def call() -> Any:
            return await client.generate(spec, MESSAGES, params)

        call.aclose = client.aclose  # type: ignore[attr-defined]
        return call
    if row == "aiohttp raw":
        import aiohttp

        sessions: dict[int, aiohttp.ClientSession] = {}
        body = {k: kwargs[k] for k in ("messages", "max_tokens", "temperature", "top_p")}
        body["model"] = "stub"

        async def call() -> Any:
            loop_id = id(asyncio.get_running_loop())
            if loop_id not in sessions:
                sessions[loop_id] = aiohttp.ClientSession()
            async with sessions[loop_id].post(
                f"{api_base}/chat/completions",
                json=body,
                headers={"Authorization": "Bearer no-key"},
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            ) as resp:
                return json.loads(await resp.read())

        async def aclose() -> None:
            for sess in sessions.values():
                await sess.close()

        call.aclose = aclose  # type: ignore[attr-defined]
        return call
    raise ValueError(f"unknown row {row!r}")


async def _noop() -> None:
    return None


async def _burst(call: Any, calls: int, concurrency: int) -> None:
    """``calls`` calls, ``concurrency`` at a time; then wait until the background work they
    left (litellm's logging queue and tasks) is done, so that it is paid by this row."""
    before = len(asyncio.all_tasks())
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await call()

    await asyncio.gather(*(one() for _ in range(calls)))
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    for _ in range(10_000):
        queue = getattr(GLOBAL_LOGGING_WORKER, "_queue", None)
        if (queue is None or queue.empty()) and len(asyncio.all_tasks()) <= before + 1:
            break
        await asyncio.sleep(0.001)


def time_row(call: Any, calls: int, concurrency: int, loop: asyncio.AbstractEventLoop) -> dict:
    """Warm up, then time ``calls`` calls; wall and CPU seconds, and start/end stamps."""
    loop.run_until_complete(_burst(call, min(calls, 2 * concurrency), concurrency))
    c0, t0, w0 = time.process_time(), time.perf_counter(), time.time()
    loop.run_until_complete(_burst(call, calls, concurrency))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"calls": calls, "wall_s": wall, "cpu_s": cpu, "start": w0, "end": w0 + wall}


def worker(args: argparse.Namespace) -> int:
    """``--worker``: time the rows named in ``--rows``, ``--rounds`` times; one JSON line per
    row. With ``--wait`` it prints ``ready`` and waits for a line on stdin before each row."""
    rows = [r for r in args.rows.split(",") if r]
    loop = asyncio.new_event_loop()
    callers = {row: _caller(row, args.api_base) for row in rows}
    for rnd in range(args.rounds):
        for row in rows:
            if args.wait:  # the parent starts every worker's row at once
                print("ready", flush=True)
                sys.stdin.readline()
            out = time_row(callers[row], args.calls, args.concurrency, loop)
            print(json.dumps({"row": row, "round": rnd, **out}), flush=True)
    for call in callers.values():  # close the HTTP sessions the rows opened
        loop.run_until_complete(call.aclose())
    loop.close()
    return 0


def _worker_cmd(args: argparse.Namespace, api_base: str, rows: str, rounds: int) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--api-base",
        api_base,
        "--rows",
        rows,
        "--rounds",
        str(rounds),
        "--calls",
        str(args.calls),
        "--concurrency",
        str(args.concurrency),
    ]


def _results(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------------------------
# the measurements


def one_process(args: argparse.Namespace, api_base: str) -> list[dict]:
    """Every row in one worker, ``--rounds`` rounds; per row the median round."""
    out = subprocess.run(
        _worker_cmd(args, api_base, ",".join(ROWS), args.rounds),
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    by_row: dict[str, list[dict]] = {}
    for r in _results(out.stdout):
        by_row.setdefault(r["row"], []).append(r)
    rows = []
    for row in ROWS:
        runs = by_row[row]
        rates = [r["calls"] / r["wall_s"] for r in runs]
        cpu = [1000 * r["cpu_s"] / r["calls"] for r in runs]
        rows.append(
            {
                "row": row,
                "processes": 1,
                "calls": runs[0]["calls"],
                "calls_per_s": statistics.median(rates),
                "cpu_ms_per_call": statistics.median(cpu),
                "rounds": [
                    {"calls_per_s": a, "cpu_ms_per_call": b}
                    for a, b in zip(rates, cpu, strict=True)
                ],
            }
        )
    return rows


def two_processes(args: argparse.Namespace, api_base: str, rows: tuple[str, ...]) -> list[dict]:
    """Each of ``rows`` in 2 workers at once: both run it together (each warms up first)."""
    procs = [
        subprocess.Popen(
            [*_worker_cmd(args, api_base, ",".join(rows), 1), "--wait"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    runs: dict[str, list[dict]] = {row: [] for row in rows}
    try:
        for row in rows:
            for p in procs:
                if p.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a worker stopped before row {row!r}")
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            for p in procs:
                runs[row].append(json.loads(p.stdout.readline()))
        for p in procs:
            p.communicate(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    out = []
    for row in rows:
        calls = sum(r["calls"] for r in runs[row])
        span = max(r["end"] for r in runs[row]) - min(r["start"] for r in runs[row])
        out.append(
            {
                "row": row,
                "processes": 2,
                "calls": calls,
                "calls_per_s": calls / span,
                "cpu_ms_per_call": 1000 * sum(r["cpu_s"] for r in runs[row]) / calls,
            }
        )
    return out


def simulated(calls: int) -> tuple[list[dict], bool]:
    """The simulated pool through litellm and on the direct path: CPU per call, identical?"""
    import dars.benchmarks as B
    from dars.llm import CallKey, GenParams, LLMClient
    from dars.sim import default_sim_specs, register_items

    bench = B.get("demo_mc", n_items=60)
    items = bench.load()
    register_items("demo_mc", items)
    specs = default_sim_specs(max_concurrency=64)
    params = GenParams(max_tokens=768, timeout_s=10.0, max_retries=0)
    work = [(specs[i % len(specs)], items[i % len(items)], i % 5, i % 3) for i in range(calls)]
    messages = {it.query_id: bench.decode_messages(it) for it in items}

    async def run(transport: str) -> list[tuple]:
        client = LLMClient()
        out = []
        for spec, item, rid, did in work:
            s = spec.model_copy(update={"transport": transport})
            key = CallKey("demo_mc", "train", item.query_id, s.name, rid, did)
            g = await client.generate(s, messages[item.query_id], params, key=key)
            out.append((g.text, g.prompt_tokens, g.completion_tokens, g.cost_usd, g.attempts))
        return out

    rows, outputs = [], {}
    for label, transport in (("sim via litellm", "litellm"), ("sim direct", "auto")):
        asyncio.run(run(transport))  # warm-up (first calls import and build caches)
        c0, t0 = time.process_time(), time.perf_counter()
        outputs[transport] = asyncio.run(run(transport))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        ms = 1000 * cpu / calls
        rows.append(
            {
                "row": label,
                "transport": transport,
                "calls": calls,
                "calls_per_s": calls / wall,
                "cpu_ms_per_call": ms,
                "demo_40k_cpu_s": ms * DEMO_CALLS / 1000,
            }
        )
    return rows, outputs["litellm"] == outputs["auto"]


async def _collect(exp: Any) -> tuple[int, int]:
    """Every rewrite shard, then every decode shard of ``exp``, concurrently on this loop (the
    collect stage's tasks without Prefect); (rewrite calls, decode calls) stored ok."""
    from dars.benchmarks.loading import load_splits
    from dars.plan import PARTITION, build_plan, expected_rewrites
    from dars.tasks.collect import decode_shard, rewrite_shard

    splits = load_splits(exp)
    rw_shards = expected_rewrites(exp, splits).select("dataset", "split", "shard").unique()
    rw = await asyncio.gather(
        *(rewrite_shard(exp, d, sp, sh, run_id="bench") for d, sp, sh in rw_shards.rows())
    )
    parts = build_plan(exp, splits).select(PARTITION).unique()
    dec = await asyncio.gather(*(decode_shard(exp, *p, run_id="bench") for p in parts.rows()))
    return sum(r.ok for r in rw), sum(r.ok for r in dec)


def collection(quick: bool, tmp: Path) -> tuple[list[dict], bool]:
    """The collect stage's tasks on configs/demo.yaml (quick: 4 + 2 queries per benchmark, 2
    models), every model on the direct path and then through litellm: CPU seconds of the whole
    collection (plan, ledger, scoring, storage included) and whether both stores are equal."""
    import yaml

    from dars.config import experiment_from_dict
    from dars.llm.loop import run_sync
    from dars.storage import scan_observations

    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data["encoder"] = "tfidf"  # the bench measures calls, not the sentence encoder
    if quick:
        data["benchmarks"] = [
            {**b, "n_train": 4, "n_test": 2, "options": {"n_items": 6}} for b in data["benchmarks"]
        ]
        data["pool"]["models"] = data["pool"]["models"][:2]
    rows, stores = [], {}
    for label, transport in (("collect direct", "auto"), ("collect via litellm", "litellm")):
        root = tmp / transport
        for m in [*data["pool"]["models"], data["rewriter"]]:
            m["transport"] = transport
        exp = experiment_from_dict({**data, "root": str(root)})
        c0, t0 = time.process_time(), time.perf_counter()
        n_rw, n_dec = run_sync(_collect(exp))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        calls = n_rw + n_dec
        rows.append(
            {
                "row": label,
                "transport": transport,
                "calls": calls,
                "decode_calls": n_dec,
                "wall_s": wall,
                "cpu_s": cpu,
                "cpu_ms_per_call": 1000 * cpu / calls,
            }
        )
        cols = ["dataset", "split", "query_id", "model", "rewrite_id", "decode_id", "response"]
        cols += ["score", "prompt_tokens", "completion_tokens", "cost_usd", "status"]
        stores[transport] = scan_observations(root).select(cols).collect().sort(cols[:6])
    same = stores["auto"].height > 0 and stores["auto"].equals(stores["litellm"])
    return rows, same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 calls per row, 1 round")
    parser.add_argument("--calls", type=int, default=None, help="calls per row and process")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--sim-calls", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wait", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-base", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rows", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calls is None:
        args.calls = 200 if args.quick else 2000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.worker:
        return worker(args)
    sim_calls = args.sim_calls or (300 if args.quick else 5000)

    t_start = time.perf_counter()
    with serve_stub(args.latency_ms / 1000) as api_base:
        rows = one_process(args, api_base)
        multi = two_processes(args, api_base, PROCESS_ROWS)
    sim_rows, same = simulated(sim_calls)
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        collect_rows, same_store = collection(args.quick, Path(tmp))

    base = rows[0]
    single = {r["row"]: r for r in rows}
    for r in rows:
        r["x_calls_per_s"] = r["calls_per_s"] / base["calls_per_s"]
        r["x_cpu_per_call"] = base["cpu_ms_per_call"] / r["cpu_ms_per_call"]
    for r in multi:
        r["x_calls_per_s"] = r["calls_per_s"] / base["calls_per_s"]
        r["x_vs_1_process"] = r["calls_per_s"] / single[r["row"]]["calls_per_s"]
        r["x_cpu_per_call"] = base["cpu_ms_per_call"] / r["cpu_ms_per_call"]

    print(
        f"\nOne call against a {args.latency_ms:.0f} ms stub server, concurrency "
        f"{args.concurrency}, {args.calls} calls per row and process "
        f"(median of {args.rounds} round(s); x = vs litellm bare, same run)"
    )
    cols = ["row", "processes", "calls_per_s", "cpu_ms_per_call", "x_calls_per_s"]
    cols += ["x_cpu_per_call", "x_vs_1_process"]
    print(table([*rows, *multi], cols))
    print("\nThe simulated pool (in process), CPU per call and the demo's 40k calls at that rate")
    sim_base = sim_rows[0]["cpu_ms_per_call"]
    for r in sim_rows:
        r["x_cpu_per_call"] = sim_base / r["cpu_ms_per_call"]
    cols = ["row", "calls", "calls_per_s", "cpu_ms_per_call", "demo_40k_cpu_s", "x_cpu_per_call"]
    print(table(sim_rows, cols))
    print(f"\nsimulated generations identical on both paths: {same}")
    print(
        "\nThe collect stage's tasks on configs/demo.yaml"
        + (" (quick: 4 + 2 queries per benchmark, 2 models)" if args.quick else "")
        + ": the whole collection's CPU (plan, ledger, scoring, storage included)"
    )
    cols = ["row", "calls", "decode_calls", "wall_s", "cpu_s", "cpu_ms_per_call"]
    print(table(collect_rows, cols))
    print(f"\nstored rows identical on both paths: {same_store}")
    print(f"bench wall time: {time.perf_counter() - t_start:.1f} s")

    if args.out:
        meta = {
            **machine(),
            "latency_ms": args.latency_ms,
            "concurrency": args.concurrency,
            "calls": args.calls,
            "rounds": args.rounds,
        }
        args.out.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "rows": rows,
                    "processes": multi,
                    "simulated": sim_rows,
                    "simulated_identical": same,
                    "collect": collect_rows,
                    "collect_identical": same_store,
                },
                indent=2,
            )
        )
    return 0 if same and same_store else 1


if __name__ == "__main__":
    sys.exit(main())
