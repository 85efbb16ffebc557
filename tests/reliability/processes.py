"""Orphans after SIGKILL (issue 12, item 5): a killed ``dars collect`` must leave no process.

Scenario: a small simulated collection with a math benchmark (so math-verify workers run), run
through the real CLI with each runner (``--runner thread|process|dask``: the Dask runner's
LocalCluster worker processes must go too); each run is SIGKILLed at a seeded moment after its
first decode call (Prefect's temporary server is up by then).
Counted: processes started by the run (found by an environment tag, see ``clirun``) still alive
a few seconds after the kill. Before issue 12, each kill left the temporary server (and often a
math-verify worker) reparented to PID 1.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from dars.storage import RunLayout
from tests.reliability.clirun import (
    REPO,
    TINY_PROTOCOL,
    cli_env,
    dars_command,
    run_dars,
    tagged_processes,
    write_config,
)
from tests.reliability.figures import Figure

TOPIC = "sigkill orphans"
GRACE_S = 10.0  # how long the children get to notice (they poll every 0.5 s)
START_TIMEOUT_S = 600.0  # a loaded 2-core machine takes minutes to reach the first decode


def _config(workdir: Path) -> Path:
    from dars.sim import default_sim_specs, sim_rewriter_spec

    return write_config(
        workdir / "orphans.yaml",
        {
            "name": "orphans",
            "root": str(workdir / "run"),
            "benchmarks": [
                {"name": "demo_math", "n_train": 16, "n_test": 8, "options": {"n_items": 24}},
                {"name": "demo_mc", "n_train": 16, "n_test": 8, "options": {"n_items": 24}},
            ],
            "protocol": {**TINY_PROTOCOL, "max_tokens": {"demo_math": 256, "demo_mc": 128}},
            # The simulated pool answers in ~0.05 ms a call in process (issue 14): paced at
            # rpm 300 per model and process, the decodes last seconds, so a kill 0-2 s after
            # the first one lands mid-collection (unpaced, the process and Dask runs finished
            # before their kill).
            "pool": {
                "models": [
                    {**s.model_dump(mode="json"), "rpm": 300} for s in default_sim_specs()[:2]
                ]
            },
            "rewriter": sim_rewriter_spec().model_dump(mode="json"),
            "shard_size": 4,
            "encoder": "tfidf",
        },
    )


def _calls_made(root: Path) -> int:
    """Decode calls the run root's ledger has recorded so far (0 before it exists): decoding is
    when every child we care about runs (pool workers, math-verify, the Prefect server)."""
    path = RunLayout(root).ledger_file()
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as conn:
            sql = "SELECT COUNT(*) FROM spend WHERE stage = 'decode'"
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:  # created but not yet initialised by the run
        return 0


#: Each runner and the name its figure carries.
RUNNER_NAMES = {"thread": "threads", "process": "processes", "dask": "dask"}


def kill_once(workdir: Path, cfg: Path, tag: str, runner: str, seed: int) -> tuple[bool, int]:
    """Start ``dars collect --runner RUNNER`` and SIGKILL it ``seed``-drawn 0–2 s after its first
    decode (the ledger grew: with the process runner math-verify runs inline in the pool
    workers, so there is no math worker to wait for); returns (killed mid-run, tagged processes
    alive ``GRACE_S`` later). Leftovers are then killed so that one kill's orphans are not
    counted again."""
    args = ["collect", "--yes", "-c", str(cfg), "--workers", "2", "--runner", runner]
    cli = subprocess.Popen(
        dars_command(*args),
        env=cli_env(workdir, tag),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = workdir / "run"
    before = _calls_made(root)
    deadline = time.monotonic() + START_TIMEOUT_S
    while cli.poll() is None and time.monotonic() < deadline:
        if _calls_made(root) > before:
            break
        time.sleep(0.2)
    time.sleep(random.Random(seed).uniform(0.0, 2.0))
    killed = cli.poll() is None
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    end = time.monotonic() + GRACE_S
    while tagged_processes(tag) and time.monotonic() < end:
        time.sleep(0.2)
    left = tagged_processes(tag)
    for pid, _, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed, len(left)


def measure(workdir: Path, quick: bool) -> list[Figure]:
    if not sys.platform.startswith("linux"):
        return [Figure(TOPIC, "orphans", "n/a", "0", True, "needs /proc (Linux)")]
    cfg = _config(workdir)
    plan = list(RUNNER_NAMES) * (1 if quick else 3)
    tag = f"orphans-{os.getpid()}"
    results = [kill_once(workdir, cfg, tag, runner, seed) for seed, runner in enumerate(plan)]
    figures = []
    for runner, name in RUNNER_NAMES.items():
        mine = [r for r, p in zip(results, plan, strict=True) if p == runner]
        killed = sum(k for k, _ in mine)
        left = sum(n for _, n in mine)
        figures.append(
            Figure(
                TOPIC,
                f"processes left after SIGKILL ({name})",
                str(left),
                "0",
                left == 0 and killed == len(mine),
                f"{killed} of {len(mine)} runs killed mid-collection; counted {GRACE_S:.0f}s "
                "after each kill",
            )
        )
    if not quick:  # a run that ends normally after the kills leaves nothing either
        done = run_dars(["collect", "--yes", "-c", str(cfg)], cli_env(workdir, tag))
        time.sleep(2.0)
        left = len(tagged_processes(tag))
        figures.append(
            Figure(
                TOPIC,
                "processes left after the resumed run",
                str(left),
                "0",
                left == 0 and done.returncode == 0,
                f"resume exit code {done.returncode}",
            )
        )
    return figures
