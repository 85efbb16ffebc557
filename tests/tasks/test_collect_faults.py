"""The collect stage under provider faults the client turns into data decisions (issue 12):
empty completions (item 9) are stored as errors and refilled by a rerun, not stored ok with
score 0; keys echoed inside completions (item 12) never reach the store.

Runs the collection coroutines without Prefect against the fake server, with the experiment and
helpers of ``tests/tasks/test_collect.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # ``tests.*`` helpers import as such whatever the rootdir
    sys.path.insert(0, str(_ROOT))

import tests.tasks.test_collect as base  # noqa: E402
from dars.storage import scan_rewrites  # noqa: E402
from tests.fakeserver import Reply, Status  # noqa: E402
from tests.tasks.test_collect import (  # noqa: E402
    FAKE_KEY,
    assert_each_key_once,
    decode_all,
    fake_experiment,
    is_decode,
    plan_keys,
    rewrite_all,
    stored,
    total,
)

# The fixtures of test_collect: the fake key in the environment, a client with millisecond
# backoff and fresh counters (autouse), and the fake server with its responder.
_client = base._client
server = base.server

REWRITER_KEY_ENV = "DARS_TEST_COLLECT_REWRITER_KEY"
REWRITER_KEY = "rewriter-canary-" + "R" * 20


def test_empty_completions_are_stored_as_errors_and_refilled_by_a_rerun(server, tmp_path):
    exp = fake_experiment(tmp_path, server.base_url)  # max_retries = 1: two requests per call
    rewrite_all(exp, tmp_path)
    # Every decode of fake-b is answered empty or whitespace-only, as a faulty gateway would.
    blank = server.add_rule(
        Reply(" \n "), times=None, match=lambda b: b["model"] == "fake-b" and is_decode(b)
    )
    first = decode_all(exp, tmp_path)

    plan = plan_keys(exp)
    on_b = plan.filter(pl.col("model") == "fake-b").height
    obs = stored(tmp_path)
    assert_each_key_once(obs)
    assert obs.height == plan.height
    errors = obs.filter(pl.col("status") == "error")
    assert errors.height == on_b and (errors["model"] == "fake-b").all()
    assert errors["error"].str.starts_with("empty after 2 attempts (fake-b)").all()
    assert errors["score"].is_null().all() and (errors["attempts"] == 2).all()
    assert blank.used == 2 * on_b
    assert total(first, "failed") == total(first, "transient_failed") == on_b
    # No ok row holds an empty answer scored 0 (what issue 12 observed in 9% of rows).
    ok = obs.filter(pl.col("status") == "ok")
    assert (ok["response"].str.strip_chars() != "").all()

    server.clear_rules()
    server.reset_counts()
    second = decode_all(exp, tmp_path)
    assert server.total_requests == on_b and total(second, "ok") == on_b
    obs2 = stored(tmp_path)
    assert_each_key_once(obs2)
    assert obs2.height == plan.height and (obs2["status"] == "ok").all()


def test_empty_completions_are_stored_ok_when_accepted(server, tmp_path):
    exp = fake_experiment(tmp_path, server.base_url, empty_completion="accept")
    rewrite_all(exp, tmp_path)
    server.add_rule(Reply(""), times=None, match=lambda b: b["model"] == "fake-b" and is_decode(b))
    decode_all(exp, tmp_path)
    obs = stored(tmp_path)
    assert (obs["status"] == "ok").all()
    on_b = obs.filter(pl.col("model") == "fake-b")
    assert (on_b["response"] == "").all() and (on_b["score"] == 0.0).all()


def test_configured_keys_echoed_in_completions_and_errors_are_never_stored(
    server, tmp_path, monkeypatch
):
    # The rewriter has a key of its own; the pool models echo theirs and the rewriter's.
    monkeypatch.setenv(REWRITER_KEY_ENV, REWRITER_KEY)
    exp = fake_experiment(tmp_path, server.base_url)
    rewriter = exp.rewriter.model_copy(update={"api_key_env": REWRITER_KEY_ENV})
    exp = exp.model_copy(update={"rewriter": rewriter})
    rewrite_all(exp, tmp_path)
    server.add_rule(
        Reply(f"Final Answer: A (also {REWRITER_KEY})", echo_auth=True),
        times=None,
        match=lambda b: b["model"] == "fake-a" and is_decode(b),
    )
    server.add_rule(
        Status(500, echo_key=True),
        times=None,
        match=lambda b: b["model"] == "fake-b" and is_decode(b),
    )
    decode_all(exp, tmp_path)
    obs = stored(tmp_path)
    assert obs.height == plan_keys(exp).height
    on_a = obs.filter(pl.col("model") == "fake-a")
    assert (on_a["status"] == "ok").all()
    assert on_a["response"].str.contains("[REDACTED]", literal=True).all()
    assert obs.filter(pl.col("model") == "fake-b")["error"].str.contains("[REDACTED]").all()
    texts = [obs, scan_rewrites(tmp_path).collect()]
    for frame in texts:
        for col in frame.select(pl.col(pl.String)).columns:
            for secret in (FAKE_KEY, REWRITER_KEY):
                assert not frame[col].str.contains(secret, literal=True).any(), (col, secret)
