"""Benchmarks: loading, splitting, prompts and scoring, behind one registry.

Registered: ``gpqa`` (mc), ``math500`` (math), ``drop800`` (span), ``jsonl``/``parquet`` (a user's
file), and the generated ``demo_mc``, ``demo_math``, ``demo_span`` used by the offline default.
"""

from dars.benchmarks.base import (
    TASK_TYPES,
    Benchmark,
    BenchmarkDataError,
    BenchmarkUnavailableError,
    Item,
    Score,
    available,
    get,
    register_benchmark,
    score,
    split_items,
)

# Importing the modules registers the benchmarks.
from dars.benchmarks import demo, drop, gpqa, local, math500  # noqa: E402,F401  isort: skip
from dars.benchmarks.prompts import decode_messages, parse_rewrites, rewrite_messages  # noqa: E402

__all__ = [
    "TASK_TYPES",
    "Benchmark",
    "BenchmarkDataError",
    "BenchmarkUnavailableError",
    "Item",
    "Score",
    "available",
    "decode_messages",
    "get",
    "parse_rewrites",
    "register_benchmark",
    "rewrite_messages",
    "score",
    "split_items",
]
