"""MATH-500: the 500-problem test subset of MATH ("Let's verify step by step").

Source: hub ``HuggingFaceH4/MATH-500`` file ``test.jsonl``, or a local ``.jsonl``/``.parquet``/
``.csv`` with columns ``problem``, ``answer`` and optionally ``unique_id`` (the query_id, e.g.
``test/precalculus/807.json``; a hash of the problem when absent), ``subject``, ``level``,
``solution``. Default split: 200 train / 300 test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dars.benchmarks.base import Benchmark, BenchmarkDataError, Item, register_benchmark
from dars.benchmarks.sources import HubSource, prepare_cache, resolve_rows, row_number


def items_from_rows(rows: list[dict[str, Any]], source: str | Path) -> list[Item]:
    """One Item per row (gold = the ``answer`` string); errors name file, row and field."""
    if not rows:
        raise BenchmarkDataError(f"{source}: no rows")
    items = []
    for i, row in enumerate(rows):
        for name in ("problem", "answer"):
            value = row.get(name)
            if value is None or not str(value).strip():
                raise BenchmarkDataError(
                    f"{source}: row {row_number(row, i)}: field {name!r} is missing or empty"
                )
        problem = str(row["problem"]).strip()
        uid = row.get("unique_id")
        if uid is not None and str(uid).strip():
            qid = str(uid).strip()
        else:
            qid = "math-" + hashlib.sha256(problem.encode()).hexdigest()[:16]
        meta = {k: row[k] for k in ("subject", "level") if row.get(k) is not None}
        items.append(
            Item(
                query_id=qid,
                question=problem,
                gold=str(row["answer"]).strip(),
                task_type="math",
                meta=meta,
            )
        )
    return items


@register_benchmark("math500")
class Math500(Benchmark):
    """MATH-500 with math-verify equivalence scoring."""

    task_type = "math"
    source = HubSource(
        benchmark="math500",
        repo_id="HuggingFaceH4/MATH-500",
        filename="test.jsonl",
        cache_name="math500",
        formats=".jsonl, .parquet or .csv with columns problem, answer[, unique_id]",
    )

    def load(
        self, path: str | Path | None = None, *, cache_dir: str | Path | None = None
    ) -> list[Item]:
        rows, origin = resolve_rows(self.source, path, cache_dir)
        return items_from_rows(rows, origin)

    def prepare_cache(
        self, path: str | Path | None = None, *, cache_dir: str | Path | None = None
    ) -> Path:
        """Store ``path`` (checked first) or the hub file in the local cache; return it."""
        return prepare_cache(self.source, path, cache_dir, items_from_rows)
