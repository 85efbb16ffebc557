"""The fake OpenAI-compatible server itself: routes, usage, scripted faults, hit counting."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.fakeserver import (
    Delay,
    FakeOpenAIServer,
    Malformed,
    Status,
    count_tokens,
    last_user_prompt,
)


def post(srv: FakeOpenAIServer, prompt: str, path: str = "/v1/chat/completions") -> tuple[int, Any]:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}{path}",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer k-123"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
            return resp.status, raw
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_answers_both_routes_with_usage() -> None:
    with FakeOpenAIServer(responder=lambda body: "Final Answer: B") as srv:
        for path in ("/v1/chat/completions", "/chat/completions"):
            code, raw = post(srv, "hello there", path)
            data = json.loads(raw)
            assert code == 200
            assert data["choices"][0]["message"]["content"] == "Final Answer: B"
            assert data["usage"] == {
                "prompt_tokens": count_tokens("hello there"),
                "completion_tokens": count_tokens("Final Answer: B"),
                "total_tokens": count_tokens("hello there") + count_tokens("Final Answer: B"),
            }
        assert post(srv, "x", "/v1/embeddings")[0] == 404
        assert srv.hits["hello there"] == 2 and srv.ok_hits["hello there"] == 2


def test_rules_by_count_prompt_and_predicate() -> None:
    with FakeOpenAIServer() as srv:
        srv.add_rule(Status(503), match="flaky", times=2)
        srv.add_rule(Status(400), match=lambda body: body["messages"][0]["content"] == "bad")
        srv.add_rule(Malformed(b"not json"), times=1)  # first request not caught above
        assert post(srv, "plain")[1] == b"not json"
        assert [post(srv, "flaky")[0] for _ in range(3)] == [503, 503, 200]
        assert post(srv, "bad")[0] == 400
        assert post(srv, "bad")[0] == 200  # times=1 by default
        assert srv.hits == {"plain": 1, "flaky": 3, "bad": 2}
        assert srv.ok_hits == {"flaky": 1, "bad": 1}
        assert srv.total_requests == 6
        srv.reset_counts()
        assert srv.total_requests == 0 and not srv.hits


def test_status_can_echo_auth_and_set_retry_after() -> None:
    with FakeOpenAIServer() as srv:
        srv.add_rule(Status(429, echo_auth=True, retry_after=1.5))
        code, raw = post(srv, "q")
        assert code == 429
        assert "Bearer k-123" in json.loads(raw)["error"]["message"]


def test_counts_concurrency_and_injects_latency() -> None:
    with FakeOpenAIServer() as srv:
        srv.add_rule(Delay(0.2), times=None)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=post, args=(srv, f"p{i}")) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.perf_counter() - t0 >= 0.2
        assert srv.max_in_flight == 4 and srv.in_flight == 0


def test_last_user_prompt_handles_content_parts() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ]
    }
    assert last_user_prompt(body) == "ab"
    assert last_user_prompt({"messages": []}) == ""


def test_port_requires_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeOpenAIServer().port
