"""Benchmarks: loading, splitting, prompts and scoring, behind two registries.

Benchmarks (``BENCHMARKS``, modules of ``dars.benchmarks.catalog``): ``gpqa`` (mc), ``math500``
(math), ``drop800`` (span), ``jsonl``/``parquet`` (a user's file), and the generated ``demo_mc``,
``demo_math``, ``demo_span`` used by the offline default. Task types (``TASK_TYPES``, modules of
``dars.benchmarks.task_types``): ``mc``, ``math``, ``span``; each is one object that renders the
prompts and scores the responses of its items. Both registries also read Python entry points
(groups ``dars.benchmarks`` and ``dars.task_types``).
"""

from dars.benchmarks.base import (
    BENCHMARKS,
    TASK_TYPES,
    Benchmark,
    BenchmarkDataError,
    BenchmarkUnavailableError,
    Item,
    Score,
    TaskType,
    available,
    get,
    get_task_type,
    register_benchmark,
    register_task_type,
    score,
    split_items,
)
from dars.benchmarks.prompts import decode_messages, parse_rewrites, rewrite_messages

__all__ = [
    "BENCHMARKS",
    "TASK_TYPES",
    "Benchmark",
    "BenchmarkDataError",
    "BenchmarkUnavailableError",
    "Item",
    "Score",
    "TaskType",
    "available",
    "decode_messages",
    "get",
    "get_task_type",
    "parse_rewrites",
    "register_benchmark",
    "register_task_type",
    "rewrite_messages",
    "score",
    "split_items",
]
