"""Money under faults: SIGKILL resume, the spend cap, two collects on one root (loopback only).

Every scenario runs ``money_helper.py`` (the collect coroutines on a thread or forked-process
pool, as the flows run them) in subprocesses against one fake OpenAI server
(``tests/fakeserver.py``) with priced models, and counts on the server side:

* **sigkill resume**: rounds on a fresh root, each killed (SIGKILL of the helper's process group)
  once during the rewrite stage and once during decoding, at a request count drawn from a
  seeded generator, then resumed to the end. Checked: duplicate keys, lost keys, the store equal
  to an uninterrupted run's, and *re-made calls*: requests per (model, prompt) beyond the
  uninterrupted run's, minus the calls the killed process had in flight (the ledger's ``lost``
  calls; the server's in-flight count where there is no ledger). A call in flight at a SIGKILL
  may have been billed and is asked again: no design can avoid that.
* **spend cap**: threads, ``--processes``, and two concurrent runs on one root, each with a cap at
  ~30% of the full collection's cost; the server-side bill (tokens of every answered request ×
  the prices, rewriter included) must stay ≤ cap + the stated bound, here 0 (the fake server
  answers within ``max_tokens`` and the prompt estimate); a second collect then makes 0 calls.
* **two collects**: two uncapped runs started together on one root: requests made twice (beyond
  the uninterrupted run's), both exit 0, store equal to the uninterrupted run's.

``measure(workdir, quick)``: quick = 2 kill rounds (4 SIGKILLs); full = 10 rounds (20 SIGKILLs).
``DARS_CODE=/path/to/checkout`` runs the helpers on another checkout (how main was measured).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from dars.storage import RunLayout
from tests.fakeserver import FakeOpenAIServer
from tests.reliability.figures import Figure
from tests.tasks.test_collect import (
    FAKE_KEY,
    IN_PRICE,
    KEY_ENV,
    OUT_PRICE,
    fake_experiment,
    fake_responder,
    write_config,
)

HELPER = Path(__file__).with_name("money_helper.py")
KEY = ["dataset", "split", "query_id", "model", "rewrite_id", "decode_id"]
VALUE_COLS = ["view", "response", "parsed", "score", "prompt_tokens", "completion_tokens"]
VALUE_COLS += ["cost_usd", "status", "prompt_sha256"]
TOPIC = "money"
# Calls one helper can have in flight: 4 shard workers × max_concurrency 4 (a model's limit is
# per process, and each worker runs one shard of one model at a time).
IN_FLIGHT_MAX = 4 * 4


class CountingServer(FakeOpenAIServer):
    """The fake server, counting requests per (model, prompt), the bill of answered requests,
    and able to SIGKILL a process group when the n-th request arrives (before answering it)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(responder=fake_responder, **kw)
        self.by_model: Counter[tuple[str, str]] = Counter()
        self.billed_usd = 0.0
        self.kill_at: int | None = None
        self.kill_pgid: int | None = None
        self.in_flight_at_kill = 0

    def _admit(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[str, Any]:
        prompt, fault = super()._admit(body, headers)
        with self._lock:
            self.by_model[(str(body.get("model")), prompt)] += 1
            if self.kill_at is not None and len(self.requests) >= self.kill_at:
                self.kill_at = None
                self.in_flight_at_kill = self.in_flight - 1  # this one is never answered
                if self.kill_pgid is not None:
                    os.killpg(self.kill_pgid, signal.SIGKILL)
        return prompt, fault

    def _completion_body(self, body: dict[str, Any]) -> bytes:
        out = super()._completion_body(body)
        usage = json.loads(out)["usage"]
        with self._lock:
            self.billed_usd += (
                usage["prompt_tokens"] * IN_PRICE + usage["completion_tokens"] * OUT_PRICE
            ) / 1e6
        return out


def _config(path: Path, root: Path, base_url: str, n_items: int) -> Path:
    """The fake-server experiment of the collect tests (demo_mc, two priced models and the
    rewriter, 2×2 train / 1+2 test protocol, shards of 3 queries) with ``n_items`` queries."""
    exp = fake_experiment(
        root,
        base_url,
        benchmarks=[{"name": "demo_mc", "n_train": n_items // 2, "options": {"n_items": n_items}}],
    )
    return write_config(exp, path)


def _start(config: Path, root: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(HELPER), str(config), str(root), *args]
    env = {**os.environ, KEY_ENV: FAKE_KEY}
    # Its own process group: a SIGKILL of the group takes the process-pool workers too.
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), err[-2000:]


def _store(root: Path) -> pl.DataFrame:
    from dars.storage import scan_observations

    return scan_observations(root).collect()


def _rewrites(root: Path) -> pl.DataFrame:
    from dars.storage import scan_rewrites

    cols = ["dataset", "split", "query_id", "rewrite_id", "text"]
    return scan_rewrites(root).select(cols).collect().sort(cols)


def _comparable(obs: pl.DataFrame) -> pl.DataFrame:
    return obs.select(*KEY, *VALUE_COLS).sort(KEY)


def _lost_in_ledger(root: Path) -> int | None:
    """Calls the ledger marks lost (in flight when their process died); None without a ledger."""
    path = root / "ledger.sqlite"
    if not path.exists():
        return None
    with sqlite3.connect(path) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM spend WHERE state IN ('lost', 'counted')"
            ).fetchone()[0]
        )


def _excess(hits: Counter, expected: Counter) -> int:
    return sum(max(0, n - expected.get(k, 0)) for k, n in hits.items())


def _fig(
    check: str, value: Any, target: str, ok: bool, detail: str = "", topic: str = ""
) -> Figure:
    return Figure(f"{TOPIC}: {topic}", check, str(value), target, bool(ok), detail)


def measure(workdir: Path, quick: bool = True) -> list[Figure]:
    """Run the money scenarios under ``workdir``; one Figure per check (module docstring)."""
    workdir = Path(workdir)
    n_items = 12
    rounds = 2 if quick else 10
    rng = random.Random(1212)
    figures: list[Figure] = []
    with CountingServer(latency_s=0.03) as srv:
        # The uninterrupted run: what every other run is compared with.
        ref_root = workdir / "reference"
        cfg = _config(workdir / "ref.yaml", ref_root, srv.base_url, n_items)
        rc, ref_rep, err = _finish(_start(cfg, ref_root))
        assert rc == 0, err
        expected = Counter(srv.by_model)
        full_cost = srv.billed_usd
        n_rewrite_calls = sum(n for (m, _), n in expected.items() if m == "fake-rewriter")
        n_requests = sum(expected.values())
        ref_obs = _comparable(_store(ref_root))
        ref_rw = _rewrites(ref_root)

        figures += _sigkill(workdir, srv, rounds, rng, expected, ref_obs, ref_rw, n_rewrite_calls,
                            n_requests, n_items)  # fmt: skip
        figures += _caps(workdir, srv, full_cost, n_items)
        figures += _two_collects(workdir, srv, expected, ref_obs, n_items)
    return figures


def _sigkill(
    workdir: Path,
    srv: CountingServer,
    rounds: int,
    rng: random.Random,
    expected: Counter,
    ref_obs: pl.DataFrame,
    ref_rw: pl.DataFrame,
    n_rewrite_calls: int,
    n_requests: int,
    n_items: int,
) -> list[Figure]:
    kills = remade = lost_total = dup = missing = differ = 0
    landed = 0
    modes = []
    for r in range(rounds):
        processes = r % 2 == 1
        modes.append("processes" if processes else "threads")
        root = workdir / f"kill-{r}"
        cfg = _config(workdir / f"kill-{r}.yaml", root, srv.base_url, n_items)
        srv.reset_counts()
        srv.by_model.clear()
        args = ["--processes"] if processes else []
        # One kill while rewriting, one while decoding, at seeded request counts.
        points = [
            rng.randint(2, n_rewrite_calls - 2),
            rng.randint(n_rewrite_calls + 5, n_requests - 10),
        ]
        in_flight = 0
        for i, at in enumerate(points):
            made = len(srv.requests)
            proc = _start(cfg, root, *args, "--run-id", f"r{r}k{i}")
            srv.kill_pgid = os.getpgid(proc.pid)
            srv.kill_at = max(at, made + 1)
            rc, _, _ = _finish(proc)
            srv.kill_at = None
            kills += 1
            if rc == -signal.SIGKILL:
                landed += 1
                in_flight += srv.in_flight_at_kill
            time.sleep(0.1)  # requests in flight at the kill finish on the server
        rc, _, err = _finish(_start(cfg, root, *args, "--run-id", f"r{r}end"))
        assert rc == 0, err
        lost = _lost_in_ledger(root)
        excused = lost if lost is not None else in_flight
        lost_total += excused
        remade += max(0, _excess(srv.by_model, expected) - excused)
        obs = _store(root)
        dup += obs.group_by(KEY).len().filter(pl.col("len") > 1).height
        ok = obs.filter(pl.col("status") == "ok")
        missing += ref_obs.join(ok, on=KEY, how="anti").height
        same = _comparable(obs).equals(ref_obs) and _rewrites(root).equals(ref_rw)
        differ += 0 if same else 1
    detail = (
        f"{kills} SIGKILLs ({landed} landed) over {rounds} rounds ({', '.join(sorted(set(modes)))})"
    )
    t = "sigkill resume"
    return [
        _fig("re-made completed calls", remade, "0", remade == 0, detail, t),
        _fig(
            "calls in flight at a kill (asked again)",
            lost_total,
            f"<= {landed * IN_FLIGHT_MAX} ({IN_FLIGHT_MAX} per kill)",
            lost_total <= landed * IN_FLIGHT_MAX,
            "may have been billed; counted in attempts",
            t,
        ),
        _fig("duplicate keys", dup, "0", dup == 0, detail, t),
        _fig("lost keys", missing, "0", missing == 0, detail, t),
        _fig("stores differing from an uninterrupted run", differ, "0", differ == 0, detail, t),
    ]


def _caps(workdir: Path, srv: CountingServer, full_cost: float, n_items: int) -> list[Figure]:
    figures = []
    cap = round(0.3 * full_cost, 8)
    for name, n_runs, args in (
        ("threads", 1, []),
        ("processes", 1, ["--processes"]),
        ("two runs", 2, []),
    ):
        root = workdir / f"cap-{name.replace(' ', '-')}"
        cfg = _config(workdir / f"cap-{name}.yaml", root, srv.base_url, n_items)
        srv.reset_counts()
        srv.billed_usd = 0.0
        procs = [
            _start(cfg, root, *args, "--cap", str(cap), "--run-id", f"c{i}") for i in range(n_runs)
        ]
        codes = [_finish(p)[0] for p in procs]
        billed = srv.billed_usd
        before = srv.total_requests
        _finish(_start(cfg, root, *args, "--cap", str(cap), "--run-id", "after"))
        again = srv.total_requests - before
        over = billed / cap - 1
        t = f"spend cap ({name})"
        figures += [
            _fig(
                "billed vs cap",
                f"${billed:.6f} of ${cap:.6f} ({over:+.0%})",
                "<= cap + 0",
                billed <= cap + 1e-12,
                f"server-side bill, rewriter included; exit codes {codes}",
                t,
            ),
            _fig("calls by a collect after the cap", again, "0", again == 0, "", t),
        ]
        # The cap must not stop a collection early either: it is refused only when billed spend
        # plus the next call's maximum cost would pass it, so billed >= cap - that maximum.
        with sqlite3.connect(RunLayout(root).ledger_file()) as conn:
            (largest,) = conn.execute("SELECT MAX(reserved_usd) FROM spend").fetchone()
        floor = cap - (largest or 0.0)
        figures.append(
            _fig(
                "cap used (not stopped early)",
                f"${billed:.6f} ({billed / cap:.0%} of the cap)",
                f">= ${floor:.6f} (cap - largest call's max cost)",
                billed >= floor - 1e-12,
                "max-cost reservations of calls in flight must not count as spent",
                t,
            )
        )
    return figures


def _two_collects(
    workdir: Path, srv: CountingServer, expected: Counter, ref_obs: pl.DataFrame, n_items: int
) -> list[Figure]:
    root = workdir / "two"
    cfg = _config(workdir / "two.yaml", root, srv.base_url, n_items)
    srv.reset_counts()
    srv.by_model.clear()
    procs = [_start(cfg, root, "--run-id", f"two{i}") for i in range(2)]
    results = [_finish(p) for p in procs]
    codes = [rc for rc, _, _ in results]
    leased = [rep.get("leased", 0) for _, rep, _ in results]
    twice = _excess(srv.by_model, expected)
    same = _comparable(_store(root)).equals(ref_obs)
    t = "two collects, one root"
    total = sum(expected.values())
    return [
        _fig(
            "calls made twice",
            f"{twice} of {total}",
            "0",
            twice == 0,
            f"keys left to the other live run: {leased}",
            t,
        ),
        _fig("both exit 0", codes, "[0, 0]", codes == [0, 0], "", t),
        _fig("store equal to an uninterrupted run", same, "True", same, "", t),
    ]
