"""GPQA (main set, 448 questions): graduate-level four-option multiple choice.

Source: the gated hub dataset ``Idavidrein/gpqa``, file ``gpqa_main.csv`` (config ``gpqa_main``),
or a local ``.csv``/``.parquet``/``.jsonl`` with the same columns: ``Question``, ``Correct Answer``,
``Incorrect Answer 1``..``3``, optionally ``Record ID``, ``Subdomain``, ``High-level domain``.
The four options are shuffled per question by a hash of its query_id, so the gold letter is fixed
across runs and machines. Default split: 200 train / 248 test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dars.benchmarks.base import Benchmark, BenchmarkDataError, Item, register_benchmark
from dars.benchmarks.sources import HubSource, prepare_cache, resolve_rows, row_number

QUESTION = "Question"
CORRECT = "Correct Answer"
INCORRECT = ("Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
RECORD_ID = "Record ID"
REQUIRED = (QUESTION, CORRECT, *INCORRECT)
CONFIGS = ("gpqa_main", "gpqa_diamond", "gpqa_extended", "gpqa_experts")


def shuffled_order(query_id: str, n: int = 4) -> list[int]:
    """The display order of the options [correct, wrong1, wrong2, wrong3] for ``query_id``: a
    permutation fixed by sha256, independent of Python's hash seed and random module."""
    return sorted(range(n), key=lambda i: hashlib.sha256(f"gpqa:{query_id}:{i}".encode()).digest())


def gpqa_query_id(row: dict[str, Any], question: str, correct: str) -> str:
    """The source's ``Record ID`` when present, else a hash of question and correct answer."""
    rid = row.get(RECORD_ID)
    if rid is not None and str(rid).strip():
        return str(rid).strip()
    digest = hashlib.sha256(f"{question}\n{correct}".encode()).hexdigest()[:16]
    return f"gpqa-{digest}"


def items_from_rows(rows: list[dict[str, Any]], source: str | Path) -> list[Item]:
    """One Item per row; errors name the file, the row and the column."""
    if not rows:
        raise BenchmarkDataError(f"{source}: no rows")
    # Exported CSVs sometimes carry stray spaces or other casing in the header.
    columns = {str(c).strip().lower(): c for c in rows[0] if c != "__row__"}
    missing = [c for c in REQUIRED if c.lower() not in columns]
    if missing:
        raise BenchmarkDataError(
            f"{source}: missing column(s) {missing}; "
            f"found columns {sorted(map(str, columns.values()))}"
        )

    def col(row: dict[str, Any], name: str) -> Any:
        key = columns.get(name.lower())
        return row.get(key) if key is not None else None

    items = []
    for i, row in enumerate(rows):
        values = {}
        for name in REQUIRED:
            value = col(row, name)
            text = "" if value is None else str(value).strip()
            if not text:
                raise BenchmarkDataError(
                    f"{source}: row {row_number(row, i)}: field {name!r} is empty"
                )
            values[name] = text
        question, correct = values[QUESTION], values[CORRECT]
        qid = gpqa_query_id({RECORD_ID: col(row, RECORD_ID)}, question, correct)
        options = [correct, *(values[c] for c in INCORRECT)]
        order = shuffled_order(qid)
        choices = tuple(options[j] for j in order)
        gold = "ABCD"[order.index(0)]
        meta = {
            "subdomain": col(row, "Subdomain"),
            "domain": col(row, "High-level domain"),
        }
        items.append(
            Item(
                query_id=qid,
                question=question,
                gold=gold,
                task_type="mc",
                choices=choices,
                meta={k: v for k, v in meta.items() if v is not None},
            )
        )
    return items


@register_benchmark("gpqa")
class GPQA(Benchmark):
    """GPQA four-option multiple choice; option ``config`` picks the hub file (gpqa_main)."""

    task_type = "mc"
    default_options = {"config": "gpqa_main"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.options["config"] not in CONFIGS:
            raise ValueError(
                f"gpqa option config={self.options['config']!r}; "
                f"allowed values: {', '.join(CONFIGS)}"
            )

    @property
    def source(self) -> HubSource:
        config = self.options["config"]
        return HubSource(
            benchmark=self.name or "gpqa",
            repo_id="Idavidrein/gpqa",
            filename=f"{config}.csv",
            cache_name=config,
            formats=".csv, .parquet or .jsonl with the GPQA columns",
            gated=True,
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
