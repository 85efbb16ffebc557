"""Canary API keys (issue 12, item 12): a key must never reach anything a run writes.

Scenario: the pool and the rewriter live on the fake OpenAI server, each with its own canary
key from the environment. The server echoes the key it received in error bodies (500s and 429s,
as ``Authorization: Bearer …`` and bare), in a response header on every reply, and inside
completions. ``dars collect`` runs (some keys fail for good: exit 1), then the persistent
errors stop and ``dars run`` fills them and runs supervise, train, evaluate and report.

Counted: occurrences of either canary (whole, or its random core) in the store and every other
output under the run root (Parquet read back, other files byte for byte), in results/, in
report/, in the captured CLI output of both runs, and in Prefect's home (its SQLite database
read table by table, other files byte for byte). Also counted, so that zero hits mean
something: how many replies carried a canary.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import polars as pl

from tests.fakeserver import FakeOpenAIServer, Reply, Status, last_user_prompt
from tests.reliability.clirun import TINY_PROTOCOL, cli_env, run_dars, write_config
from tests.reliability.figures import Figure

TOPIC = "canary key"
POOL_ENV, REWRITER_ENV = "DARS_CANARY_POOL_KEY", "DARS_CANARY_REWRITER_KEY"
POOL_KEY = "dars-canary-pool-7f3a9c1e5b2d4f60a8e1"
REWRITER_KEY = "dars-canary-rewriter-2b8e6d0c4a91f357"
# A partly redacted or cut key still leaks its core.
NEEDLES = (POOL_KEY, REWRITER_KEY, "7f3a9c1e5b2d4f60a8e1", "2b8e6d0c4a91f357")


def _bucket(body: dict[str, Any], n: int) -> int:
    """A stable draw in [0, n) for a request (its model and prompt)."""
    return zlib.crc32(f"{body.get('model')}|{last_user_prompt(body)}".encode()) % n


def _is_rewrite(body: dict[str, Any]) -> bool:
    return "JSON array of exactly" in last_user_prompt(body)


def responder(body: dict[str, Any]) -> str:
    """Rewrites: a JSON array of variants of the question; decodes: an option letter drawn from
    the model and prompt (so routers have something to learn)."""
    prompt = last_user_prompt(body)
    if _is_rewrite(body):
        n = int(prompt.split("JSON array of exactly", 1)[1].split()[0])
        question = next(
            (ln[10:] for ln in prompt.splitlines() if ln.startswith("Question: ")), prompt
        )
        return json.dumps([f"Variant {i}: {question}" for i in range(n)])
    return f"Let me see.\nFinal Answer: {'ABCD'[_bucket(body, 4)]}"


def _config(workdir: Path, base_url: str) -> Path:
    def model(name: str, env: str) -> dict[str, Any]:
        return {
            "name": name,
            "litellm_model": f"openai/{name}",
            "api_base": base_url,
            "api_key_env": env,
            "input_price_per_m": 1.0,
            "output_price_per_m": 2.0,
            "max_concurrency": 4,
        }

    return write_config(
        workdir / "canary.yaml",
        {
            "name": "canary",
            "root": str(workdir / "run"),
            "benchmarks": [
                {"name": "demo_mc", "n_train": 6, "n_test": 3, "options": {"n_items": 9}}
            ],
            "pool": {"models": [model("fake-a", POOL_ENV), model("fake-b", POOL_ENV)]},
            "rewriter": model("fake-rewriter", REWRITER_ENV),
            "protocol": {**TINY_PROTOCOL, "max_tokens": {"demo_mc": 64}},
            "request_timeout_s": 10,
            "max_retries": 1,
            "single_shot_draws": 5,
            "shard_size": 4,
            "encoder": "tfidf",
            # what the evaluation experiments compare (as in tests/flows/test_cli.py)
            "families": ["knn", "avengers_pro", "mirt"],
        },
    )


def hits_in(text: str | bytes) -> int:
    """Occurrences of any needle in ``text``."""
    if isinstance(text, bytes):
        return sum(text.count(n.encode()) for n in NEEDLES)
    return sum(text.count(n) for n in NEEDLES)


def hits_in_tree(root: Path) -> int:
    """Needle occurrences in every file under ``root``: Parquet files read back (their pages are
    compressed, so their bytes would hide a key), SQLite databases read table by table (a long
    text may be split across pages), everything else byte for byte."""
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            total += hits_in(str(pl.read_parquet(path).to_dicts()))
        elif path.suffix == ".db":
            total += hits_in_sqlite(path)
        else:
            total += hits_in(path.read_bytes())
    return total


def hits_in_sqlite(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        total = 0
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                total += sum(hits_in(v) for v in row if isinstance(v, str | bytes))
        return total
    finally:
        con.close()


def measure(workdir: Path, quick: bool) -> list[Figure]:
    del quick  # one scenario: it is already the smallest that exercises every stage
    with FakeOpenAIServer(responder=responder, echo_auth_header=True) as srv:
        # Persistent errors echoing the key (Bearer and bare) on 1 decode in 7: failed keys.
        persistent = srv.add_rule(
            Status(500, echo_auth=True, echo_key=True),
            times=None,
            match=lambda b: not _is_rewrite(b) and _bucket(b, 7) == 0,
        )
        # Transient ones, rewriter included: retried, then answered.
        transient = srv.add_rule(Status(429, echo_key=True), times=6)
        # Completions quoting the key on 1 decode in 5, and a few empty ones.
        in_reply = srv.add_rule(
            Reply("Final Answer: B", echo_auth=True),
            times=None,
            match=lambda b: not _is_rewrite(b) and _bucket(b, 5) == 1,
        )
        srv.add_rule(Reply("  "), times=3, match=lambda b: not _is_rewrite(b))
        cfg = _config(workdir, srv.base_url)
        env = cli_env(workdir, "canary", **{POOL_ENV: POOL_KEY, REWRITER_ENV: REWRITER_KEY})
        first = run_dars(["collect", "--yes", "-c", str(cfg)], env)
        persistent.times = persistent.used  # the provider recovers
        second = run_dars(["run", "--yes", "-c", str(cfg)], env)
        echoes = {
            "error bodies": persistent.used + transient.used,
            "completions": in_reply.used,
            "headers": srv.total_requests,  # every reply
        }
    run = workdir / "run"
    places = {
        "store and outputs": sum(
            hits_in_tree(d) for d in sorted(run.iterdir()) if d.name not in ("results", "report")
        ),
        "results/": hits_in_tree(run / "results") if (run / "results").exists() else 0,
        "report/": hits_in_tree(run / "report") if (run / "report").exists() else 0,
        "CLI output": hits_in(first.stdout + first.stderr + second.stdout + second.stderr),
        "Prefect home (SQLite DB)": hits_in_tree(workdir / "prefect-home"),
    }
    detail = f"collect exit {first.returncode} (keys failed for good), run exit {second.returncode}"
    figures = [
        Figure(
            TOPIC,
            "replies that echoed a canary",
            ", ".join(f"{n} {where}" for where, n in echoes.items()),
            "each > 0",
            all(echoes.values()),
            "500/429 bodies with the Bearer and the bare key; X-Echo-Api-Key on every reply",
        ),
        Figure(
            TOPIC,
            "runs completed",
            f"collect {first.returncode}, run {second.returncode}",
            "collect 1, run 0",
            first.returncode == 1 and second.returncode == 0,
            "the first collect ends with failed keys, the pipeline fills them",
        ),
    ]
    figures += [
        Figure(TOPIC, f"canary hits in {where}", str(n), "0", n == 0, detail)
        for where, n in places.items()
    ]
    if second.returncode != 0:
        tail = (second.stdout + second.stderr)[-600:].replace("\n", " | ")
        figures.append(Figure(TOPIC, "run output (tail)", "failed", "-", False, tail))
    return figures
