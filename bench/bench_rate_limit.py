"""Benchmark: the rate limiter against a server that enforces rpm over a sliding window.

Two local OpenAI-compatible servers (``tests/fakeserver.py``, 50 ms per answer) each admit at
most ``rpm × window / 60`` requests in any sliding ``window`` seconds and answer the others 429
with ``Retry-After``. Two ``LLMClient`` s call them at the same time, on the process's one LLM
event loop (``dars.llm.loop``, as the collect stage calls), with ``--concurrency`` callers each
looping until ``--duration`` seconds have passed and the model's ``rpm`` set to the servers'
limit:

* ``old``: the bucket dars had before issue 14 (one second of traffic, full at start);
* ``paced``: the bucket now (:mod:`dars.llm.limits`: 98% of the rate, one request of burst).

Per client the table gives the requests the server admitted in the run and their rate as a share
of the allowed rpm, the 429s it sent, the most admitted requests in any sliding window (the
limit is what the server allows), the busiest second over the per-second rate, and the calls
that failed after their retries. Both clients run side by side, so machine load hits both.

    python bench/bench_rate_limit.py                 # rpm 240, 60 s window, 3 minutes
    python bench/bench_rate_limit.py --quick --out /tmp/bench_rate_limit.json   # rpm 600, 10 s

Prints a table and, with --out, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fakeserver: the project's OpenAI-compatible fake server

from bench.rows import table, write_rows  # noqa: E402

#: The limiter of each mode: ``ModelLimits`` keyword arguments.
MODES: dict[str, dict[str, float]] = {
    "old": {"headroom": 1.0, "burst_s": 1.0},
    "paced": {},
}


def _client(limits: Any) -> Any:
    """An ``LLMClient`` whose every model uses ``limits``; a 429 is retried after the server's
    Retry-After (up to 60 s) as the collect stage's client would."""
    from dars.llm.client import LLMClient

    class FixedLimitsClient(LLMClient):
        def limits_for(self, spec: Any) -> Any:
            return limits

    return FixedLimitsClient(backoff_base_s=1.0, backoff_max_s=60.0)


async def _drive(client: Any, spec: Any, concurrency: int, duration_s: float) -> dict[str, int]:
    """``concurrency`` callers, each calling until ``duration_s`` has passed."""
    from dars.llm import GenParams, LLMCallError

    params = GenParams(max_tokens=16, timeout_s=30.0, max_retries=5)
    deadline = time.monotonic() + duration_s
    counts = {"ok": 0, "failed": 0}

    async def caller(i: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            messages = [{"role": "user", "content": f"caller {i} question {n}"}]
            try:
                await client.generate(spec, messages, params)
                counts["ok"] += 1
            except LLMCallError:
                counts["failed"] += 1

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return counts


async def _warm_up(server: Any) -> None:
    """A few unlimited calls before the clock starts. A process's first litellm calls take
    ~1 s to leave (litellm sets up its HTTP client and logging on the loop), whatever paced
    them, and then reach the server together: once per process, within the tolerance of a
    60 s window (see dars.llm.limits) but not of the quick run's 10 s one."""
    from dars.config import ModelSpec
    from dars.llm import GenParams
    from dars.llm.client import LLMClient

    spec = ModelSpec(
        name="warm-up",
        litellm_model="openai/warm-up",
        api_base=server.base_url,
        input_price_per_m=0.0,
        output_price_per_m=0.0,
    )
    params = GenParams(max_tokens=16, timeout_s=30.0, max_retries=0)
    messages = [{"role": "user", "content": "warm-up"}]
    await asyncio.gather(*(LLMClient().generate(spec, messages, params) for _ in range(8)))


def _busiest(times: list[float], window_s: float) -> int:
    """The most of the sorted ``times`` in any window [t, t + window_s)."""
    return max(
        (bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times)), default=0
    )


def _row(
    mode: str, server: Any, counts: dict[str, int], t0: float, *, rpm: int, duration_s: float
) -> dict[str, Any]:
    """One row of the table from a mode's server and callers."""
    window_s = server.rate_limit[1]
    admitted = [t - t0 for t in server.admitted_at]
    in_run = [t for t in admitted if t < duration_s]
    per_s = rpm / 60
    return {
        "mode": mode,
        "rpm": rpm,
        "window_s": window_s,
        "limit_per_window": server.rate_limit[0],
        "duration_s": duration_s,
        "admitted": len(in_run),
        "share_of_rpm": len(in_run) / (duration_s * per_s),
        "http_429": server.rate_limited,
        "first_window": sum(1 for t in admitted if t < window_s),
        "busiest_window": _busiest(admitted, window_s),
        "busiest_second_x": _busiest(admitted, 1.0) / per_s,
        "calls_ok": counts["ok"],
        "calls_failed": counts["failed"],
    }


def run(rpm: int, window_s: float, duration_s: float, concurrency: int) -> list[dict[str, Any]]:
    """Both modes at the same time on the process's LLM event loop (as the collect stage calls
    models), each against its own rate-limited server."""
    from dars.config import ModelSpec
    from dars.llm.client import get_litellm
    from dars.llm.limits import ModelLimits
    from dars.llm.loop import run_sync
    from tests.fakeserver import FakeOpenAIServer

    get_litellm()
    limit = round(rpm * window_s / 60)
    with contextlib.ExitStack() as stack:
        run_sync(_warm_up(stack.enter_context(FakeOpenAIServer())))
        servers = {
            m: stack.enter_context(FakeOpenAIServer(rate_limit=(limit, window_s), latency_s=0.05))
            for m in MODES
        }
        jobs = []
        for mode, server in servers.items():
            spec = ModelSpec(
                name=f"limited-{mode}",
                litellm_model="openai/limited",
                api_base=server.base_url,
                max_concurrency=concurrency,
                rpm=rpm,
                input_price_per_m=0.0,
                output_price_per_m=0.0,
            )
            client = _client(ModelLimits(concurrency, rpm, None, **MODES[mode]))
            jobs.append(_drive(client, spec, concurrency, duration_s))

        async def both() -> list[dict[str, int]]:
            return await asyncio.gather(*jobs)

        t0 = time.monotonic()
        counts = run_sync(both())
        return [
            _row(m, servers[m], c, t0, rpm=rpm, duration_s=duration_s)
            for m, c in zip(MODES, counts, strict=True)
        ]


def print_table(rows: list[dict[str, Any]]) -> None:
    r0 = rows[0]
    print(
        f"rpm {r0['rpm']} against a sliding {r0['window_s']:g} s window "
        f"({r0['limit_per_window']} requests), {r0['duration_s']:g} s per client, side by side"
    )
    shown = [
        {
            "bucket": r["mode"],
            "admitted": r["admitted"],
            "% of rpm": f"{100 * r['share_of_rpm']:.1f}%",
            "429s": r["http_429"],
            "1st window": r["first_window"],
            "busiest window": f"{r['busiest_window']} / {r['limit_per_window']}",
            "busiest 1 s": f"{r['busiest_second_x']:.2f}x",
            "failed": r["calls_failed"],
        }
        for r in rows
    ]
    print(table(shown, list(shown[0])))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="rpm 600, 10 s window, 25 s")
    ap.add_argument("--rpm", type=int, default=None)
    ap.add_argument("--window", type=float, default=None, help="server window (s)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per client")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from dars.env import apply_offline_defaults

    apply_offline_defaults()
    rpm = args.rpm or (600 if args.quick else 240)
    window = args.window or (10.0 if args.quick else 60.0)
    duration = args.duration or (25.0 if args.quick else 180.0)
    rows = run(rpm, window, duration, args.concurrency)
    print_table(rows)
    write_rows(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
