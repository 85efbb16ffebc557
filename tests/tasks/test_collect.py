"""Collection coroutines (``dars.tasks.collect``) without Prefect, against the fake
OpenAI-compatible server (tests/fakeserver.py) and the simulated pool.

Checked: every planned key is stored exactly once with what the server answered; failures are
recorded without the API key and a rerun requests exactly the failed keys; a run killed with
SIGKILL resumes without requesting any completed key again (the ledger's journal); an error inside
a shard stops its other calls; the spend cap holds over runs, rewriter calls included; the simulated
pool gives the same store in another process; ``ShardIncomplete`` pickles; ``run_sync`` works
in a forked child.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # ``tests.*`` helpers import as such whatever the rootdir
    sys.path.insert(0, str(_ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dars.llm.client as llm_client  # noqa: E402
from dars.benchmarks import get as get_benchmark  # noqa: E402
from dars.benchmarks.catalog.demo import DemoMC  # noqa: E402
from dars.benchmarks.loading import items_by_id, load_splits  # noqa: E402
from dars.config import Experiment, experiment_from_dict  # noqa: E402
from dars.llm.loop import run_sync  # noqa: E402
from dars.plan import KEY, PARTITION, build_plan, expected_rewrites  # noqa: E402
from dars.storage import scan_observations, scan_rewrites  # noqa: E402
from dars.tasks.collect import (  # noqa: E402
    ShardIncomplete,
    ShardReport,
    decode_shard,
    estimate_budget,
    progress,
    prompt_sha256,
    reset_progress,
    rewrite_shard,
)
from tests.fakeserver import FakeOpenAIServer, Status, count_tokens, last_user_prompt  # noqa: E402

KEY_ENV = "DARS_TEST_COLLECT_KEY"
FAKE_KEY = "sk-test-" + "X" * 24
IN_PRICE, OUT_PRICE = 1.0, 2.0  # USD per 1M tokens of every fake-server model
HELPER = _ROOT / "tests" / "collect_kill_helper.py"
DECODE_TEXT = "The options were compared one by one.\nFinal Answer: A"

_N_REWRITES = re.compile(r"JSON array of exactly (\d+) strings")
_QUESTION = re.compile(r"^Question: (.*)$", re.MULTILINE)


def fake_responder(body: dict[str, Any]) -> str:
    """Rewrite prompts (they ask for a JSON array) get n variants of the question; decode
    prompts always get option A."""
    prompt = last_user_prompt(body)
    n = _N_REWRITES.search(prompt)
    if n is None:
        return DECODE_TEXT
    question = _QUESTION.search(prompt).group(1)
    return json.dumps([f"Variant {i}: {question}" for i in range(int(n.group(1)))])


def is_decode(body: dict[str, Any]) -> bool:
    return _N_REWRITES.search(last_user_prompt(body)) is None


def decode_hits(srv: FakeOpenAIServer) -> Counter[str]:
    """Requests the server received per decode prompt (rewrite prompts left out)."""
    return Counter({p: n for p, n in srv.hits.items() if _N_REWRITES.search(p) is None})


def fake_experiment(
    root: Path,
    base_url: str,
    *,
    concurrency: int = 4,
    protocol: dict[str, Any] | None = None,
    transport: str = "auto",
    **top: Any,
) -> Experiment:
    """demo_mc (12 items: 6 train, 6 test, shards of 3 queries), two models and the rewriter on
    the fake server, called over ``transport``; ``protocol`` and ``top`` override the protocol
    and top-level fields."""

    def model(name: str) -> dict[str, Any]:
        return {
            "transport": transport,
            "name": name,
            "litellm_model": f"openai/{name}",
            "api_base": base_url,
            "api_key_env": KEY_ENV,
            "input_price_per_m": IN_PRICE,
            "output_price_per_m": OUT_PRICE,
            "max_concurrency": concurrency,
        }

    return experiment_from_dict(
        {
            "name": "fake",
            "root": str(root),
            "benchmarks": [{"name": "demo_mc", "n_train": 6, "options": {"n_items": 12}}],
            "pool": {"models": [model("fake-a"), model("fake-b")]},
            "rewriter": model("fake-rewriter"),
            "protocol": {
                "train_rewrites": 2,
                "train_decodes": 2,
                "test_rewrites": 1,
                "test_rewrite_decodes": 1,
                "test_decodes": 2,
                "max_tokens": {"demo_mc": 64},
                **(protocol or {}),
            },
            "request_timeout_s": 10,
            "max_retries": 1,
            "shard_size": 3,
            "encoder": "tfidf",
            **top,
        }
    )


def sim_experiment(root: Path) -> Experiment:
    """Three simulated models on a multiple-choice and a span benchmark, tiny protocol."""
    from dars.sim import default_sim_specs, sim_rewriter_spec

    return experiment_from_dict(
        {
            "name": "sim",
            "root": str(root),
            "benchmarks": [
                {"name": "demo_mc", "n_train": 4, "n_test": 2, "options": {"n_items": 8}},
                {"name": "demo_span", "n_train": 4, "n_test": 2, "options": {"n_items": 8}},
            ],
            "pool": {"models": [s.model_dump() for s in default_sim_specs()[:3]]},
            "rewriter": sim_rewriter_spec().model_dump(),
            "protocol": {
                "train_rewrites": 2,
                "train_decodes": 2,
                "test_rewrites": 1,
                "test_rewrite_decodes": 1,
                "test_decodes": 2,
                "max_tokens": {"demo_mc": 256, "demo_span": 128},
            },
            "shard_size": 2,
            "encoder": "tfidf",
        }
    )


def write_config(exp: Experiment, path: Path) -> Path:
    path.write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------
# running and reading


async def _all_rewrites(exp: Experiment, root: Path) -> list[ShardReport]:
    shards = expected_rewrites(exp, load_splits(exp)).select("dataset", "split", "shard").unique()
    return list(
        await asyncio.gather(
            *(rewrite_shard(exp, d, s, sh, run_id="t") for d, s, sh in shards.rows())
        )
    )


async def _all_decodes(exp: Experiment, root: Path, **kw: Any) -> list[ShardReport]:
    shards = build_plan(exp, load_splits(exp)).select(PARTITION).unique()
    return list(
        await asyncio.gather(
            *(decode_shard(exp, *part, run_id="t", **kw) for part in shards.rows())
        )
    )


def rewrite_all(exp: Experiment, root: Path) -> list[ShardReport]:
    """Every rewrite shard, concurrently, on the process-wide LLM loop (as the tasks run)."""
    return run_sync(_all_rewrites(exp, root))


def decode_all(exp: Experiment, root: Path, **kw: Any) -> list[ShardReport]:
    """Every decode shard, concurrently, on the process-wide LLM loop."""
    return run_sync(_all_decodes(exp, root, **kw))


def total(reports: list[ShardReport], field: str) -> int:
    return sum(getattr(r, field) for r in reports)


def stored(root: Path) -> pl.DataFrame:
    return scan_observations(root).collect()


def assert_each_key_once(obs: pl.DataFrame) -> None:
    dup = obs.group_by(list(KEY)).len().filter(pl.col("len") > 1)
    assert dup.height == 0, f"keys stored twice:\n{dup}"


def plan_keys(exp: Experiment) -> pl.DataFrame:
    return build_plan(exp, load_splits(exp))


def decode_prompts(exp: Experiment, root: Path, keys: pl.DataFrame) -> Counter[str]:
    """The user prompt the server must receive for each key of ``keys`` (stored rewrites used
    for rewrite_id >= 0), counted: the decode ids of one (query, rewrite) share a prompt."""
    splits = load_splits(exp)
    out: Counter[str] = Counter()
    for dataset in keys["dataset"].unique():
        bench = get_benchmark(dataset, **exp.benchmark(dataset).options)
        by_id = items_by_id(splits[dataset])
        texts = {
            (q, r): t
            for q, r, t in scan_rewrites(root, dataset=dataset)
            .select("query_id", "rewrite_id", "text")
            .collect()
            .rows()
        }
        for qid, rid in (
            keys.filter(pl.col("dataset") == dataset).select("query_id", "rewrite_id").rows()
        ):
            question = texts[(qid, rid)] if rid >= 0 else None
            out[bench.decode_messages(by_id[qid], question)[-1]["content"]] += 1
    return out


@pytest.fixture(autouse=True)
def _client(monkeypatch):
    """The fake key in the environment, a client with millisecond backoff, fresh counters."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    monkeypatch.setattr(
        llm_client, "_DEFAULT_CLIENT", llm_client.LLMClient(backoff_base_s=0.01, backoff_max_s=0.05)
    )
    reset_progress()
    yield
    reset_progress()


@pytest.fixture
def server():
    with FakeOpenAIServer(responder=fake_responder) as srv:
        yield srv


# ------------------------------------------------------------------------------------------------
# tests


def test_every_planned_key_is_stored_once_with_what_the_server_answered(server, tmp_path):
    exp = fake_experiment(tmp_path, server.base_url)
    plan = plan_keys(exp)
    # 6 train queries x 2 models x (2 rewrites x 2 decodes) + 6 test x 2 x (1 + 2)
    assert plan.height == 48 + 36
    budget = estimate_budget(exp)
    # One row per (dataset, split, model), the rewriter's first.
    assert budget.select("split", "model").rows() == [
        ("train", "fake-rewriter"),
        ("test", "fake-rewriter"),
        ("train", "fake-a"),
        ("train", "fake-b"),
        ("test", "fake-a"),
        ("test", "fake-b"),
    ]
    assert budget["calls"].to_list() == [6, 6, 24, 24, 18, 18]
    assert (budget["max_cost_usd"] >= budget["typical_cost_usd"]).all()

    rw = rewrite_all(exp, tmp_path)
    dec = decode_all(exp, tmp_path)

    assert total(rw, "planned") == total(rw, "ok") == 6 * 2 + 6 * 1
    assert total(dec, "planned") == total(dec, "ok") == plan.height
    assert total(dec, "failed") == total(dec, "not_run") == 0
    assert server.total_requests == 12 + plan.height  # one rewriter call per query
    obs = stored(tmp_path)
    assert_each_key_once(obs)
    assert obs.height == plan.height
    keyed = plan.join(obs, on=list(KEY), how="left", suffix="_stored")
    assert keyed["status"].to_list() == ["ok"] * plan.height
    assert (keyed["view"] == keyed["view_stored"]).all()

    # Scores: every response answers A, so a key scores 1 exactly when its gold is A.
    splits = load_splits(exp)
    items = items_by_id(splits["demo_mc"])
    gold_a = obs["query_id"].map_elements(lambda q: items[q].gold == "A", return_dtype=pl.Boolean)
    assert obs["score"].to_list() == [1.0 if g else 0.0 for g in gold_a]
    assert (obs["parsed"] == "A").all() and obs["parse_ok"].all()
    assert (obs["response"] == DECODE_TEXT).all() and (obs["attempts"] == 1).all()

    # Tokens and cost follow the server's usage (ceil(chars / 4)) and the configured prices;
    # the stored prompt hash is the hash of the prompt actually rendered for the key.
    bench = get_benchmark("demo_mc", n_items=12)
    rewrites = {
        (q, r): t
        for q, r, t in scan_rewrites(tmp_path)
        .select("query_id", "rewrite_id", "text")
        .collect()
        .rows()
    }
    for row in obs.iter_rows(named=True):
        rid = row["rewrite_id"]
        messages = bench.decode_messages(
            items[row["query_id"]], rewrites[(row["query_id"], rid)] if rid >= 0 else None
        )
        assert row["prompt_sha256"] == prompt_sha256(messages)
        assert row["prompt_tokens"] == count_tokens("".join(m["content"] for m in messages))
        assert row["completion_tokens"] == count_tokens(DECODE_TEXT)
        cost = (row["prompt_tokens"] * IN_PRICE + row["completion_tokens"] * OUT_PRICE) / 1e6
        assert row["cost_usd"] == pytest.approx(cost)
    assert decode_hits(server) == decode_prompts(exp, tmp_path, plan)

    # Rewrites: the rewriter's answer, parsed, one row per planned (query, rewrite id).
    rw_rows = scan_rewrites(tmp_path).collect()
    assert rw_rows.height == 18
    for row in rw_rows.iter_rows(named=True):
        assert row["text"] == f"Variant {row['rewrite_id']}: {items[row['query_id']].question}"
        assert row["rewriter"] == "fake-rewriter" and row["numbers_ok"]

    # Process counters: decode keys and rewriter calls apart, each with its cost.
    prog, rw_prog = progress("decode"), progress("rewrite")
    assert (prog.planned, prog.ok, prog.failed) == (plan.height, plan.height, 0)
    assert (rw_prog.ok, rw_prog.failed) == (12, 0)
    assert rw_prog.cost_usd == pytest.approx(total(rw, "cost_usd"))
    assert prog.cost_usd == pytest.approx(obs["cost_usd"].sum())

    # Nothing is left: the budget is empty and a rerun sends no request.
    assert estimate_budget(exp)["calls"].sum() == 0
    before = server.total_requests
    again = rewrite_all(exp, tmp_path) + decode_all(exp, tmp_path)
    assert server.total_requests == before
    assert total(again, "already_done") == total(again, "planned") == 18 + plan.height
    assert_frame_equal(stored(tmp_path).sort(list(KEY)), obs.sort(list(KEY)))


def test_failed_keys_are_recorded_without_the_key_and_a_rerun_requests_only_them(server, tmp_path):
    exp = fake_experiment(tmp_path, server.base_url)  # max_retries = 1: two requests per call
    splits = load_splits(exp)
    flaky = splits["demo_mc"]["train"][0]  # every decode of it on fake-b gets a 500
    broken = splits["demo_mc"]["test"][1]  # every decode of it on fake-a gets a 401
    server.add_rule(
        Status(500, echo_auth=True),
        times=None,
        match=lambda b: (
            b["model"] == "fake-b" and is_decode(b) and flaky.question in last_user_prompt(b)
        ),
    )
    server.add_rule(
        Status(401, "bad key", echo_auth=True),
        times=None,
        match=lambda b: (
            b["model"] == "fake-a" and is_decode(b) and broken.question in last_user_prompt(b)
        ),
    )
    rewrite_all(exp, tmp_path)
    first = decode_all(exp, tmp_path)

    plan = plan_keys(exp)
    on_b = (pl.col("model") == "fake-b") & (pl.col("query_id") == flaky.query_id)
    on_a = (pl.col("model") == "fake-a") & (pl.col("query_id") == broken.query_id)
    failing = on_b | on_a
    n_flaky, n_broken = 2 * 2, 1 + 2  # train cells of one query; test cells of one query
    assert plan.filter(failing).height == n_flaky + n_broken
    obs = stored(tmp_path)
    assert_each_key_once(obs)
    assert obs.height == plan.height  # every key has a row, ok or error
    errors = obs.filter(pl.col("status") == "error").sort(list(KEY))
    assert_frame_equal(
        errors.select(KEY), plan.filter(failing).select(KEY).sort(list(KEY)), check_dtypes=False
    )
    assert errors["score"].is_null().all() and (errors["cost_usd"] == 0).all()
    # An error row's latency is the time spent on the key (requests and backoff), not 0.
    assert (errors["latency_s"] > 0).all()
    # The server echoed the Authorization header into its error bodies; nothing stored has it.
    assert server.headers[0]["authorization"] == f"Bearer {FAKE_KEY}"
    for col in obs.columns:
        if obs[col].dtype == pl.String:
            assert not obs[col].str.contains("sk-test", literal=True).any(), col
    flaky_rows = errors.filter(pl.col("model") == "fake-b")
    assert flaky_rows["error"].str.starts_with("server_error 500 after 2 attempts (fake-b)").all()
    assert (flaky_rows["attempts"] == 2).all()
    broken_rows = errors.filter(pl.col("model") == "fake-a")  # not transient: not retried
    assert broken_rows["error"].str.starts_with("auth 401 after 1 attempt (fake-a)").all()
    assert (broken_rows["attempts"] == 1).all()
    assert total(first, "failed") == n_flaky + n_broken
    assert total(first, "transient_failed") == n_flaky
    incomplete = [r for r in first if not r.complete]
    assert {(r.split, r.model, r.shard) for r in incomplete} == {
        ("train", "fake-b", 0),
        ("test", "fake-a", 0),
    }
    message = str(ShardIncomplete(next(r for r in incomplete if r.model == "fake-b")))
    assert message.startswith("demo_mc/train/fake-b/shard 0: 4 failed, 0 not run (")
    # The cause, counted: failure class and status (the model is in the shard's name).
    assert "(4 × server_error 500" in message
    assert {r.model: r.errors for r in incomplete} == {
        "fake-b": {"server_error 500": 4},
        "fake-a": {"auth 401": 3},
    }
    assert FAKE_KEY not in message
    failed_prompts = decode_prompts(exp, tmp_path, plan.filter(failing))
    assert decode_hits(server) - decode_prompts(exp, tmp_path, plan.filter(~failing)) == Counter(
        {p: n * (2 if flaky.question in p else 1) for p, n in failed_prompts.items()}
    )

    server.clear_rules()
    server.reset_counts()
    second = decode_all(exp, tmp_path)

    # Exactly the failed keys were requested again, once each; nothing that was ok.
    assert server.total_requests == n_flaky + n_broken
    assert decode_hits(server) == failed_prompts
    assert total(second, "ok") == n_flaky + n_broken
    assert total(second, "already_done") == plan.height - n_flaky - n_broken
    obs2 = stored(tmp_path)
    assert_each_key_once(obs2)
    assert obs2.height == plan.height and (obs2["status"] == "ok").all()
    # attempts count every request ever made for a key: the error row's plus the new one.
    refilled = obs2.join(errors.select(*KEY, pl.col("attempts").alias("before")), on=list(KEY))
    assert (refilled["attempts"] == refilled["before"] + 1).all()
    unchanged = obs2.join(errors.select(KEY), on=list(KEY), how="anti").sort(list(KEY))
    assert_frame_equal(unchanged, obs.filter(pl.col("status") == "ok").sort(list(KEY)))


def test_a_killed_run_resumes_without_requesting_checkpointed_keys(tmp_path):
    checkpoint_rows, concurrency = 5, 2
    root = tmp_path / "run"
    # 50 ms per request and 2 in flight: the 60 keys of the shard take well over a second, so
    # the kill lands mid-run.
    with FakeOpenAIServer(responder=fake_responder, latency_s=0.05) as srv:
        exp = fake_experiment(
            root,
            srv.base_url,
            concurrency=concurrency,
            protocol={"train_rewrites": 4, "train_decodes": 5},
        )
        run_sync(rewrite_shard(exp, "demo_mc", "train", 0, run_id="t"))
        part = ("demo_mc", "train", "fake-a", 0)
        planned = plan_keys(exp).filter(
            (pl.col("split") == "train") & (pl.col("model") == "fake-a") & (pl.col("shard") == 0)
        )
        assert planned.height == 3 * 4 * 5
        srv.reset_counts()
        cmd = [sys.executable, str(HELPER), str(write_config(exp, tmp_path / "fake.yaml"))]
        cmd += [str(root), "--shard", "/".join(map(str, part))]
        cmd += ["--checkpoint-rows", str(checkpoint_rows)]
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, KEY_ENV: FAKE_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while stored(root).height == 0:
                if proc.poll() is not None:
                    pytest.fail(f"helper exited ({proc.returncode}): {proc.stderr.read()!r}")
                if time.monotonic() > deadline:
                    pytest.fail("helper stored nothing within 60 s")
                time.sleep(0.01)
        finally:
            proc.kill()  # SIGKILL: no finally block, no last checkpoint
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.1)  # let the server finish answering requests that were in flight
        hits_before = srv.total_requests
        obs = stored(root)
        n_stored = obs.height
        assert_each_key_once(obs)

        srv.reset_counts()
        report = run_sync(decode_shard(exp, *part, run_id="t2", checkpoint_rows=5))

        # Completed calls were journaled before their slot was released: the resumed shard
        # stores those first and requests none of them again. Only calls in flight are lost.
        n_done = n_stored + report.recovered
        assert 0 < n_done < planned.height, "the kill must land mid-run"
        assert n_done <= hits_before <= n_done + concurrency
        assert srv.total_requests == planned.height - n_done
        assert (report.already_done, report.ok, report.failed) == (
            n_done,
            planned.height - n_done,
            0,
        )
        final = stored(root)
        assert_each_key_once(final)
        assert final.height == planned.height and (final["status"] == "ok").all()
        assert final.join(planned, on=list(KEY), how="anti").height == 0
        assert final.filter(pl.col("run_id") == "helper").height == n_done
        # attempts count the requests lost in flight too (the ledger knows them); a call killed
        # after its reservation but before its request counts as well, hence the range.
        made = hits_before + srv.total_requests
        assert made <= final["attempts"].sum() <= made + concurrency
        assert not list(root.rglob("*.tmp"))  # a leftover temporary file was cleaned up


# litellm creates its provider coroutine before awaiting it; a call cancelled in between leaves
# it unawaited, which Python reports when it is collected.
@pytest.mark.filterwarnings("ignore:coroutine '.*acompletion' was never awaited:RuntimeWarning")
def test_both_transports_store_the_same_rows(tmp_path):
    """The same server answering the same collection over litellm and over the direct HTTP
    transport: the same stored rows (answers, scores, tokens, cost, status, attempts), failures
    included (a 500 answered once, then ok; a 401 for good)."""
    compared = [*KEY, "view", "response", "parsed", "score", "prompt_tokens"]
    compared += ["completion_tokens", "cost_usd", "status", "attempts"]
    out = {}
    for transport in ("litellm", "http"):
        root = tmp_path / transport
        with FakeOpenAIServer(responder=fake_responder) as srv:
            exp = fake_experiment(root, srv.base_url, transport=transport)
            train = load_splits(exp)["demo_mc"]["train"]
            srv.add_rule(Status(500), times=1, match=train[0].question)
            srv.add_rule(
                Status(401),
                times=None,
                match=lambda b, q=train[1].question: (
                    b["model"] == "fake-a" and is_decode(b) and q in last_user_prompt(b)
                ),
            )
            rewrite_all(exp, root)
            decode_all(exp, root)
        out[transport] = stored(root).select(compared).sort(list(KEY))
    assert (out["litellm"]["status"] == "error").sum() == 4  # 2 rewrites x 2 decodes on fake-a
    assert out["http"].equals(out["litellm"])


def test_an_error_inside_a_shard_cancels_its_other_calls(tmp_path, monkeypatch):
    with FakeOpenAIServer(responder=fake_responder, latency_s=0.02) as srv:
        exp = fake_experiment(tmp_path, srv.base_url, concurrency=1)
        run_sync(rewrite_shard(exp, "demo_mc", "train", 0, run_id="t"))
        bad = load_splits(exp)["demo_mc"]["train"][1]
        real_score = DemoMC.score

        def score(self, response, item):
            if item.query_id == bad.query_id:
                raise RuntimeError("scorer bug")
            return real_score(self, response, item)

        monkeypatch.setattr(DemoMC, "score", score)
        srv.reset_counts()
        with pytest.raises(RuntimeError, match="scorer bug"):
            run_sync(
                decode_shard(exp, "demo_mc", "train", "fake-a", 0, run_id="t", checkpoint_rows=99)
            )
        # One call at a time in plan order: the 4 keys of the first query, then the failing one
        # (and at most the next, which may have taken the free slot before the cancellation
        # reached it). The others are never requested, even later on the shared loop.
        n = srv.total_requests
        assert 5 <= n <= 6
        time.sleep(0.2)
        assert srv.total_requests == n
        obs = stored(tmp_path)  # what finished before the error was still checkpointed
        assert obs.height == 4 and set(obs["query_id"]) == {
            load_splits(exp)["demo_mc"]["train"][0].query_id
        }


def server_cost(srv: FakeOpenAIServer) -> float:
    """What the fake server billed: every request it answered, at the fake models' prices."""
    total_usd = 0.0
    for body in srv.requests:
        pt = count_tokens("".join(str(m.get("content") or "") for m in body["messages"]))
        ct = count_tokens(fake_responder(body))
        total_usd += (pt * IN_PRICE + ct * OUT_PRICE) / 1e6
    return total_usd


def test_the_spend_cap_holds_over_runs_with_rewriter_calls_included(server, tmp_path):
    from dars.storage import ledger

    concurrency = 2
    probe = fake_experiment(tmp_path / "probe", server.base_url)
    item = load_splits(probe)["demo_mc"]["train"][0]
    messages = get_benchmark("demo_mc", n_items=12).decode_messages(item)
    # The rewriter's spend counts against the cap, plus room for 4 decode calls at their maximum
    # cost (64 output tokens each); actual calls cost less, so a few more fit.
    one_call = llm_client.max_cost_usd(
        probe.pool.get("fake-a"), messages, llm_client.GenParams(max_tokens=64)
    )
    uncapped = fake_experiment(tmp_path, server.base_url, concurrency=concurrency)
    run_sync(rewrite_shard(uncapped, "demo_mc", "train", 0, run_id="r"))
    rewriter_usd = ledger(tmp_path).committed_usd()
    assert rewriter_usd == pytest.approx(server_cost(server)) and rewriter_usd > 0
    cap = rewriter_usd + 4 * one_call
    exp = fake_experiment(tmp_path, server.base_url, concurrency=concurrency, spend_cap_usd=cap)
    calls_per_run = []
    for i in range(6):
        before = server.total_requests
        report = run_sync(decode_shard(exp, "demo_mc", "train", "fake-a", 0, run_id=f"t{i}"))
        calls_per_run.append(server.total_requests - before)
        if calls_per_run[-1] == 0:
            break
    # Runs stop when the cap has no room for one more call; none passes it, over all runs.
    assert calls_per_run[0] > 0 and calls_per_run[-1] == 0, calls_per_run
    assert report.notes == ["spend cap reached"] and not report.complete
    assert report.transient_failed == 0  # a Prefect retry could not help
    billed = server_cost(server)
    assert billed <= cap
    summary = ledger(tmp_path).summary()
    assert summary.billed_usd == pytest.approx(billed)
    assert summary.calls == server.total_requests and summary.reserved_usd == 0
    # Every stored key was billed and recorded; none was stored twice.
    obs = stored(tmp_path)
    assert_each_key_once(obs)
    assert obs.height == sum(calls_per_run)


def test_the_simulated_pool_gives_the_same_store_in_another_process(tmp_path):
    exp = sim_experiment(tmp_path / "a")
    rewrite_all(exp, tmp_path / "a")
    reports = decode_all(exp, tmp_path / "a")
    assert total(reports, "ok") == plan_keys(exp).height
    # The same collection in a fresh interpreter with another hash seed, another root.
    config = write_config(exp, tmp_path / "sim.yaml")
    done = subprocess.run(
        [sys.executable, str(HELPER), str(config), str(tmp_path / "b")],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert sum(json.loads(line)["ok"] for line in done.stdout.splitlines()) > 0

    cols = [*KEY, "view", "response", "parsed", "score", "prompt_tokens", "completion_tokens"]
    cols += ["cost_usd", "status", "prompt_sha256"]
    a = stored(tmp_path / "a").select(cols).sort(list(KEY))
    b = stored(tmp_path / "b").select(cols).sort(list(KEY))
    assert a.height == plan_keys(exp).height
    assert_frame_equal(a, b)
    assert 0 < a["score"].mean() < 1  # a real mix of right and wrong answers
    rw = [*["dataset", "split", "query_id", "rewrite_id"], "text"]
    assert_frame_equal(
        scan_rewrites(tmp_path / "a").select(rw).sort(rw).collect(),
        scan_rewrites(tmp_path / "b").select(rw).sort(rw).collect(),
    )


def test_shard_incomplete_survives_pickling():
    # Process-pool workers and Prefect's result store pickle the exception.
    exc = ShardIncomplete(ShardReport("decode", "demo_mc", "train", "m", 3, failed=2, notes=["x"]))
    back = pickle.loads(pickle.dumps(exc))
    assert back.report == exc.report and str(back) == str(exc)


def _answer_in_child() -> int:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    return run_sync(answer())


def test_run_sync_works_in_a_forked_child():
    assert _answer_in_child() == 42  # the parent's loop thread is running now
    # A forked child inherits the loop object but not its thread; it must start its own loop
    # instead of waiting forever on one nobody runs.
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_answer_in_child).get(timeout=20) == 42
