"""Failure classes, the stored error string and key scrubbing (``dars.llm.errors``)."""

from __future__ import annotations

import json
import logging

import pytest

from dars.llm.errors import (
    TRANSIENT_KINDS,
    LLMCallError,
    ScrubFilter,
    classify_exception,
    remember_secret,
    scrub,
    scrub_known,
)
from dars.llm.keys import remember_keys


def test_scrub_removes_known_and_key_shaped_secrets() -> None:
    text = (
        "bad key sk-abcdef123456 header Authorization: Bearer tok_987654 and api_key=xyz123 MYKEY"
    )
    out = scrub(text, ["MYKEY"])
    for secret in ("sk-abcdef123456", "tok_987654", "xyz123", "MYKEY"):
        assert secret not in out
    assert out.startswith("bad key [REDACTED]")


def test_a_remembered_secret_is_scrubbed_from_every_later_text() -> None:
    remember_secret("plain-looking-value-77")
    assert scrub("echo plain-looking-value-77 back") == "echo [REDACTED] back"


def test_scrub_known_removes_key_values_only() -> None:
    remember_secret("remembered-key-value-31")
    text = (
        "a remembered-key-value-31 b GIVEN-KEY-1234 c Bearer tok_987654 api_key=xyz123 sk-abc123456"
    )
    out = scrub_known(text, ["GIVEN-KEY-1234"])
    # Key-shaped text that is no key we hold is left alone: in a completion it is the answer.
    assert out == "a [REDACTED] b [REDACTED] c Bearer tok_987654 api_key=xyz123 sk-abc123456"
    # A remembered value too short to be a provider key is not cut out of answers.
    remember_secret("test")
    assert scrub_known("a test answer") == "a test answer"


def test_remember_keys_reads_the_environment_of_every_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dars.config import ModelSpec

    monkeypatch.setenv("DARS_TEST_REMEMBER_A", "value-of-key-a-0001")
    monkeypatch.delenv("DARS_TEST_REMEMBER_B", raising=False)
    specs = [
        ModelSpec(name="a", litellm_model="openai/a", api_key_env="DARS_TEST_REMEMBER_A"),
        ModelSpec(name="b", litellm_model="openai/b", api_key_env="DARS_TEST_REMEMBER_B"),
        ModelSpec(name="c", litellm_model="dars-sim/c"),
        None,  # an experiment without a rewriter
    ]
    remember_keys(specs)
    assert scrub_known("k=value-of-key-a-0001") == "k=[REDACTED]"
    assert scrub("value-of-key-a-0001") == "[REDACTED]"


def test_scrub_filter_redacts_log_records() -> None:
    remember_secret("another-secret-4242")
    record = logging.LogRecord("LiteLLM", logging.ERROR, __file__, 1, "body: %s", ("x",), None)
    record.args = ("another-secret-4242",)
    assert ScrubFilter().filter(record)  # never drops a record …
    assert record.getMessage() == "body: [REDACTED]"  # … only redacts it


def test_classify_plain_exceptions(litellm_module) -> None:
    assert classify_exception(TimeoutError())[0] == "timeout"
    assert classify_exception(ConnectionResetError())[0] == "connection"
    assert classify_exception(RuntimeError("bug"))[0] == "unknown"


def test_classify_litellm_exceptions_and_status_codes(litellm_module) -> None:
    lit = litellm_module
    rate = lit.RateLimitError("slow down", llm_provider="openai", model="m")
    assert classify_exception(rate) == ("rate_limit", 429)
    auth = lit.AuthenticationError("no", llm_provider="openai", model="m")
    assert classify_exception(auth)[0] == "auth"

    class WithStatus(Exception):
        def __init__(self, status_code: int) -> None:
            self.status_code = status_code

    assert [classify_exception(WithStatus(s)) for s in (408, 413, 503, 418)] == [
        ("timeout", 408),
        ("context_window", 413),
        ("server_error", 503),
        ("bad_request", 418),
    ]
    try:  # an undecodable body anywhere in the cause chain is malformed (transient)
        try:
            json.loads("{cut")
        except json.JSONDecodeError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify_exception(outer) == ("malformed", None)


def test_llm_call_error_string_and_transience() -> None:
    err = LLMCallError("server_error", "boom", model="m", status_code=502, attempts=3)
    assert str(err) == "server_error 502 after 3 attempts (m): boom" and err.transient
    err = LLMCallError("auth", "x" * 400, model="m", attempts=1)
    assert not err.transient and len(str(err)) == 300
    assert str(err).startswith("auth after 1 attempt (m): ")
    transient = {"rate_limit", "server_error", "timeout", "connection", "malformed", "empty"}
    assert transient == TRANSIENT_KINDS


@pytest.mark.parametrize("kind", sorted(TRANSIENT_KINDS))
def test_transient_kinds_are_transient(kind: str) -> None:
    assert LLMCallError(kind, "", model="m").transient
