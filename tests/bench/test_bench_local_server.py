"""bench/bench_local_server.py without a real server: it skips with a clear message when the
server venv is absent, points the config at the servers it started, and reads the numbers of a
hand-written store and Prefect database exactly."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import yaml

from dars.config import experiment_from_dict
from dars.storage import write_observations

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _obs(model, qid, decode_id, *, dataset="demo_mc", status="ok", **over):
    row = {
        "dataset": dataset,
        "split": "train",
        "query_id": qid,
        "model": model,
        "view": "train",
        "rewrite_id": 0,
        "decode_id": decode_id,
        "prompt_sha256": "ab" * 32,
        "response": "Final Answer: B",
        "parsed": "B",
        "parse_ok": True,
        "score": 1.0,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost_usd": 0.0,
        "latency_s": 1.0,
        "status": status,
        "error": None,
        "attempts": 1,
        "run_id": "r",
        "created_at": T0,
    }
    if status == "error":
        row |= {"response": None, "parsed": None, "parse_ok": False, "score": None}
        row |= {"prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0, "error": "timeout"}
    row.update(over)
    return row


def test_skips_with_a_clear_message_without_a_server_venv(bench_local, monkeypatch, capsys):
    monkeypatch.delenv("DARS_LOCAL_SERVER_PYTHON", raising=False)
    result = bench_local.main([])
    printed = capsys.readouterr().out
    assert printed.startswith("SKIPPED: ") and "DARS_LOCAL_SERVER_PYTHON" in printed
    assert "pip install 'llama-cpp-python[server]'" in printed
    assert set(result) == {"skipped"}


def test_config_points_at_the_started_servers_and_quick_shrinks(bench_local):
    data = yaml.safe_load(bench_local.LOCAL.read_text())
    assert bench_local.served_models(data) == ["smollm2-135m", "gemma3-270m"]
    urls = {"smollm2-135m": "http://127.0.0.1:5001/v1", "gemma3-270m": "http://127.0.0.1:5002/v1"}
    full = experiment_from_dict(bench_local.bench_config(data, urls, quick=False))
    assert [m.api_base for m in full.pool.models] == list(urls.values())
    assert [b.name for b in full.benchmarks] == ["demo_mc", "demo_math", "demo_span"]
    quick = experiment_from_dict(bench_local.bench_config(data, urls, quick=True))
    assert [(b.name, b.n_train, b.n_test) for b in quick.benchmarks] == [("demo_mc", 3, 2)]
    p = quick.protocol
    assert (p.train_rewrites, p.train_decodes, p.test_rewrites, p.test_decodes) == (1, 1, 1, 1)
    assert p.max_tokens == {"demo_mc": 256} and quick.families == ["knn", "mirt"]
    # The config file itself is untouched.
    assert yaml.safe_load(bench_local.LOCAL.read_text()) == data


def test_store_summary_counts_tokens_latency_and_parse_failures(bench_local, tmp_path):
    rows = [
        _obs("a", "q1", 0, latency_s=1.0, prompt_tokens=100, completion_tokens=10),
        _obs(
            "a",
            "q1",
            1,
            latency_s=3.0,
            prompt_tokens=110,
            completion_tokens=30,
            response="I think",
            parsed=None,
            parse_ok=False,
            score=0.0,
        ),
        _obs("a", "q2", 0, status="error"),
        _obs("b", "q1", 0, dataset="demo_math", latency_s=2.0, score=0.0),
    ]
    write_observations(tmp_path, rows, shard=0)
    s = bench_local.store_summary(tmp_path)
    a = next(r for r in s["models"] if r["model"] == "a")
    assert (a["calls"], a["ok"], a["failed"]) == (3, 2, 1)
    assert (a["prompt_tokens"], a["completion_tokens"]) == (210, 40)
    assert (a["prompt_tokens_per_call"], a["completion_tokens_per_call"]) == (105.0, 20.0)
    assert (a["latency_mean_s"], a["latency_p50_s"]) == (2.0, 2.0)
    assert a["latency_p95_s"] == pytest.approx(2.9)  # linear between 1.0 and 3.0
    assert a["parse_ok_share"] == 0.5 and a["mean_score"] == 0.5
    assert s["overall"]["calls"] == 4 and s["overall"]["ok"] == 3
    assert s["overall"]["latency_p50_s"] == 2.0
    scores = {(r["model"], r["dataset"]): r for r in s["scores"]}
    assert scores[("a", "demo_mc")] == {
        "model": "a",
        "dataset": "demo_mc",
        "calls": 2,
        "parse_ok_share": 0.5,
        "mean_score": 0.5,
    }
    assert scores[("b", "demo_math")]["mean_score"] == 0.0
    assert s["parse_failures"] == [{"model": "a", "dataset": "demo_mc", "response": "I think"}]
    report = bench_local.format_report(
        {"store": s, "stages": [], "run": {"wall_s": 12.5}, "servers": {}}
    )
    assert "1.00 (1.00)" not in report and "0.50 (0.50)" in report
    assert "dars run (subprocess)" in report and "12.5" in report


def test_stage_times_come_from_the_prefect_database(bench_local, tmp_path):
    assert bench_local.stage_times(tmp_path) == []  # no database: nothing, no error
    # The two tables as Prefect 3's temporary server writes them (timestamps as text).
    with sqlite3.connect(tmp_path / "prefect.db") as con:
        con.execute("CREATE TABLE flow (id TEXT, name TEXT)")
        con.execute(
            "CREATE TABLE flow_run (id TEXT, flow_id TEXT, state_type TEXT, start_time TEXT, "
            "end_time TEXT)"
        )
        con.executemany("INSERT INTO flow VALUES (?, ?)", [("f1", "pipeline"), ("f2", "train")])
        con.executemany(
            "INSERT INTO flow_run VALUES (?, ?, ?, ?, ?)",
            [
                (
                    "r2",
                    "f2",
                    "COMPLETED",
                    "2026-12-02 05:20:39.500000",
                    "2026-12-02 05:20:41.000000",
                ),
                ("r1", "f1", "FAILED", "2026-12-02 05:20:32.000000", None),
            ],
        )
    assert bench_local.stage_times(tmp_path) == [
        {"flow": "pipeline", "state": "FAILED", "wall_s": None},
        {"flow": "train", "state": "COMPLETED", "wall_s": 1.5},
    ]
    (tmp_path / "prefect.db").unlink()
    (tmp_path / "prefect.db").write_text("not a database")
    assert bench_local.stage_times(tmp_path) == []


def test_script_exits_0_when_skipping(monkeypatch, tmp_path):
    import subprocess
    import sys

    monkeypatch.delenv("DARS_LOCAL_SERVER_PYTHON", raising=False)
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_local_server.py"
    out = subprocess.run(
        [sys.executable, str(script), "--server-python", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.startswith("SKIPPED: "), out.stderr
    assert "does not exist" in out.stdout
