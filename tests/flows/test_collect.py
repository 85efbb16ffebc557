"""The collection flows (rewrite → decode, chained by collect) under a temporary Prefect server.

On the simulated pool: every planned key is collected, a second run submits no task, and
observations deleted behind Prefect's back are collected again (no stale cached "complete"
result). On the fake server: failing shards are retried by Prefect only for transient errors, the
flow fails naming the first failed shard, and a later decode flow fills exactly the failed keys.
Also runs bench/bench_collect.py in quick mode (threads only).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from prefect.states import Failed

from dars.benchmarks.loading import load_splits
from dars.config import load_experiment
from dars.plan import KEY, build_plan, status
from dars.storage import RunLayout, scan_observations
from dars.tasks.collect import ShardIncomplete, ShardReport, _retry_transient, decode_shard_task
from tests.fakeserver import FakeOpenAIServer, Status, last_user_prompt

pytestmark = pytest.mark.flow

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_collect.py"
KEY_ENV = "DARS_TEST_FLOW_KEY"


def tiny_demo_config(path: Path, root: Path) -> Path:
    """configs/demo.yaml with tiny sizes: its multiple-choice and span benchmarks (4 train + 2
    test queries each, one shard per split; demo_math is left out because math-verify's warm-up
    costs seconds), its first two simulated models, 2 × 2 train protocol, TF-IDF similarity (no
    sentence encoder to load)."""
    data = yaml.safe_load(DEMO.read_text())
    data["benchmarks"] = [
        {**b, "n_train": 4, "n_test": 2, "options": {"n_items": 6}}
        for b in data["benchmarks"]
        if b["name"] in ("demo_mc", "demo_span")
    ]
    data["pool"]["models"] = data["pool"]["models"][:2]
    data["protocol"].update(train_rewrites=2, train_decodes=2, test_rewrites=1, test_decodes=2)
    data.update(root=str(root), shard_size=4, encoder="tfidf")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def progress_of(config: Path, root: Path) -> dict[str, int]:
    exp = load_experiment(config)
    st = status(build_plan(exp, load_splits(exp)), scan_observations(root))
    return (
        st.filter(pl.col("dataset").is_null())
        .select("expected", "done", "failed", "missing")
        .row(0, named=True)
    )


def test_collect_flow_collects_every_key_once_and_skips_complete_shards(prefect_harness, tmp_path):
    from dars.flows.collect import collect_flow, decode_flow

    root = tmp_path / "run"
    config = tiny_demo_config(tmp_path / "tiny.yaml", root)
    exp = load_experiment(config)
    n_keys = build_plan(exp, load_splits(exp)).height
    # Per benchmark: 4 train x 2 models x 4 + 2 test x 2 models x (1 + 2).
    assert n_keys == 2 * (32 + 12)

    first = collect_flow(str(config), str(root), workers=4)

    assert first["rewrite"]["tasks"] == 2 * 2  # one per (benchmark, split)
    assert first["decode"]["tasks"] == 2 * 2 * 2  # one per (benchmark, split, model)
    assert first["decode"]["ok"] == n_keys and first["decode"]["failures"] == []
    assert progress_of(config, root) == {
        "expected": n_keys,
        "done": n_keys,
        "failed": 0,
        "missing": 0,
    }
    obs = scan_observations(root).collect().sort(list(KEY))
    assert obs.group_by(list(KEY)).len()["len"].max() == 1

    # A second run finds every partition complete and submits nothing.
    again = collect_flow(str(config), str(root), workers=4)
    assert again["rewrite"]["tasks"] == again["decode"]["tasks"] == 0

    # Deleting the observations behind Prefect's back: every shard runs again (no cached
    # "complete" result stands in for data that is gone), and gives the same store.
    shutil.rmtree(RunLayout(root).observations_dir())
    refill = decode_flow(str(config), str(root), workers=4)
    assert refill["tasks"] == 2 * 2 * 2 and refill["ok"] == n_keys
    cols = [*KEY, "view", "response", "score", "cost_usd", "prompt_sha256"]
    assert_frame_equal(
        scan_observations(root).collect().sort(list(KEY)).select(cols), obs.select(cols)
    )


def fake_config(path: Path, root: Path, base_url: str) -> Path:
    """demo_mc on three fake-server models (fake-ok, fake-500, fake-401) and a fake rewriter;
    one request per call (max_retries 0); one train and one test shard per model."""

    def model(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "litellm_model": f"openai/{name}",
            "api_base": base_url,
            "api_key_env": KEY_ENV,
            "input_price_per_m": 1.0,
            "output_price_per_m": 2.0,
            "max_concurrency": 4,
        }

    data = {
        "name": "fake-flow",
        "root": str(root),
        "benchmarks": [{"name": "demo_mc", "n_train": 4, "n_test": 4, "options": {"n_items": 8}}],
        "pool": {"models": [model("fake-ok"), model("fake-500"), model("fake-401")]},
        "rewriter": model("fake-rewriter"),
        "protocol": {
            "train_rewrites": 2,
            "train_decodes": 2,
            "test_rewrites": 1,
            "test_rewrite_decodes": 1,
            "test_decodes": 2,
            "max_tokens": {"demo_mc": 64},
        },
        "request_timeout_s": 10,
        "max_retries": 0,
        "shard_size": 4,
        "encoder": "tfidf",
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _respond(body: dict[str, Any]) -> str:
    prompt = last_user_prompt(body)
    if "JSON array of exactly" in prompt:
        question = prompt.split("Question: ", 1)[1].split("\n", 1)[0]
        n = int(prompt.split("JSON array of exactly ", 1)[1].split(" ", 1)[0])
        return json.dumps([f"Variant {i}: {question}" for i in range(n)])
    return "Compared the options.\nFinal Answer: B"


def test_failed_shards_fail_the_flow_and_a_decode_rerun_fills_only_their_keys(
    prefect_harness, tmp_path, monkeypatch
):
    from dars.flows.collect import collect_flow, decode_flow

    monkeypatch.setenv(KEY_ENV, "sk-test-" + "Y" * 24)
    # Prefect's retry delays (2 s, 20 s) are for real providers; the retries themselves are kept.
    monkeypatch.setattr(decode_shard_task, "retry_delay_seconds", [0, 0])
    with FakeOpenAIServer(responder=_respond) as srv:
        srv.add_rule(Status(500), times=None, match=lambda b: b["model"] == "fake-500")
        srv.add_rule(Status(401), times=None, match=lambda b: b["model"] == "fake-401")
        root = tmp_path / "run"
        config = fake_config(tmp_path / "fake.yaml", root, srv.base_url)
        exp = load_experiment(config)
        plan = build_plan(exp, load_splits(exp))
        per_model = Counter(plan["model"])
        assert per_model == {"fake-ok": 28, "fake-500": 28, "fake-401": 28}

        with pytest.raises(RuntimeError) as info:
            collect_flow(str(config), str(root), workers=4)

        message = str(info.value)
        assert message.startswith(
            "collection incomplete: 0 rewrite shard(s) and 4 decode shard(s) failed; first: "
            "demo_mc/train/fake-500/shard 0: 16 failed, 0 not run"
        )
        assert "sk-test" not in message
        requests = Counter(b["model"] for b in srv.requests)
        # 500s are transient: each shard ran 3 times (2 Prefect retries), each retry asking only
        # for its still-failed keys; 401s are not, so those shards ran once.
        assert requests == {
            "fake-rewriter": 8,
            "fake-ok": per_model["fake-ok"],
            "fake-500": 3 * per_model["fake-500"],
            "fake-401": per_model["fake-401"],
        }
        assert progress_of(config, root) == {
            "expected": plan.height,
            "done": per_model["fake-ok"],
            "failed": per_model["fake-500"] + per_model["fake-401"],
            "missing": 0,
        }

        srv.clear_rules()
        srv.reset_counts()
        summary = decode_flow(str(config), str(root), workers=4)

        assert summary["tasks"] == 4 and summary["failures"] == []
        assert summary["already_done"] == 0 and summary["ok"] == 56
        assert Counter(b["model"] for b in srv.requests) == {"fake-500": 28, "fake-401": 28}
        assert progress_of(config, root)["done"] == plan.height
        obs = scan_observations(root).collect()
        assert obs.height == plan.height and (obs["status"] == "ok").all()


def test_retry_condition_needs_a_transient_failure():
    def failed(**counts: int):
        return Failed(data=ShardIncomplete(ShardReport("decode", "d", "train", "m", 0, **counts)))

    assert _retry_transient(None, None, failed(failed=3, transient_failed=1))
    assert not _retry_transient(None, None, failed(failed=3, transient_failed=0))
    assert not _retry_transient(None, None, failed(not_run=5))
    assert not _retry_transient(None, None, Failed(data=ValueError("bug")))


def test_bench_collect_quick_runs_and_reports_throughput(prefect_harness, tmp_path, capsys):
    # Threads only: process workers take tens of seconds to start on a small machine, too slow
    # for the suite (the full bench compares both modes and checks their stores are identical).
    spec = importlib.util.spec_from_file_location("bench_collect", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench" / "collect.json"
    result = bench.main(["--quick", "--modes", "threads", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "calls/s" in printed and "threads" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["rows"]
    # 3 benchmarks x (2 train x 2 models x 4 + 1 test x 2 models x 6) decodes + 9 rewriter calls
    assert (row["mode"], row["workers"], row["calls"]) == ("threads", 4, 3 * (16 + 12) + 9)
    assert row["decode_calls"] == 3 * (16 + 12) and row["wall_s"] > 0
    assert row["calls_per_s"] == pytest.approx(row["calls"] / row["wall_s"])
