"""Hand-made observation and rewrite rows for the storage tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def obs_row(
    query_id: str = "q1",
    model: str = "m1",
    rewrite_id: int = 0,
    decode_id: int = 0,
    *,
    status: str = "ok",
    dataset: str = "demo",
    split: str = "train",
    **over: Any,
) -> dict[str, Any]:
    """One valid observation row; ``over`` replaces any column."""
    view = "train" if split == "train" else ("test_decode" if rewrite_id == -1 else "test_rewrite")
    row = {
        "dataset": dataset,
        "split": split,
        "query_id": query_id,
        "model": model,
        "view": view,
        "rewrite_id": rewrite_id,
        "decode_id": decode_id,
        "prompt_sha256": "ab" * 32,
        "response": "The answer is B",
        "parsed": "B",
        "parse_ok": True,
        "score": 1.0 if status == "ok" else None,
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "cost_usd": 0.0004,
        "latency_s": 0.8,
        "status": status,
        "error": None if status == "ok" else "RateLimitError: 429",
        "attempts": 1,
        "run_id": "run-1",
        "created_at": T0,
    }
    row.update(over)
    return row


def rewrite_row(
    query_id: str = "q1",
    rewrite_id: int = 0,
    *,
    dataset: str = "demo",
    split: str = "train",
    **over: Any,
) -> dict[str, Any]:
    """One valid rewrite row; ``over`` replaces any column."""
    row = {
        "dataset": dataset,
        "split": split,
        "query_id": query_id,
        "rewrite_id": rewrite_id,
        "text": f"Rephrased question {query_id}/{rewrite_id}",
        "rewriter": "rw",
        "complete": True,
        "dup_original": False,
        "dup_rewrite": False,
        "struct_ok": True,
        "similarity": 0.91,
        "numbers_ok": True,
        "review_flag": False,
        "created_at": T0,
    }
    row.update(over)
    return row


@pytest.fixture
def root(tmp_path):
    return tmp_path / "run"


@pytest.fixture(scope="session")
def make_obs():
    """Factory fixture: ``make_obs("q1", "m1", 0, 1, status="error")`` -> one observation dict."""
    return obs_row


@pytest.fixture(scope="session")
def make_rewrite():
    """Factory fixture: ``make_rewrite("q1", 2)`` -> one rewrite dict."""
    return rewrite_row
