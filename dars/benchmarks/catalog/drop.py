"""DROP-800: a fixed 800-question subset of the DROP validation set (span / number / date answers).

Sources (all give the same query_ids for the same passage and question):

- the hub ``ucinlp/drop`` validation Parquet: ``passage``, ``question``, ``query_id``,
  ``answers_spans`` {``spans``, ``types``}. That flattening mixes alternative answers and the parts
  of a multi-span answer in one list; each element is taken as an accepted answer;
- rows with the original answer objects: ``passage``, ``question``, ``answer`` {``number``,
  ``date``, ``spans``} and optionally ``validated_answers`` (a list of such objects, or one object
  of lists);
- the original nested DROP JSON: {passage_id: {``passage``, ``qa_pairs``: [{``question``,
  ``query_id``, ``answer``, ``validated_answers``}]}};
- the flattened JSONL: ``context`` = "Passage: …\\nQuestion: …\\nAnswer:", ``completion``, and
  ``ref_text`` = accepted answers joined by "|".

Gold is a tuple of accepted answers (the answer plus every validated answer). A multi-span answer
is one string with its spans joined by " | ", the same form the decode prompt asks for.
query_id = "drop-" + sha256(passage, question) with whitespace normalised, so the subset does not
depend on which source was used; identical (passage, question) pairs are merged with the union of
their answers. The subset is the ``n_items`` questions with the smallest sha256("drop800:" +
query_id). Default split: 200 train / 600 test.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

from dars.benchmarks.base import Benchmark, BenchmarkDataError, Item, register_benchmark
from dars.benchmarks.dropf1 import SPAN_SEPARATOR
from dars.benchmarks.sources import (
    HubSource,
    fetch_to_cache,
    read_json_file,
    read_rows,
    resolve_rows,
    row_number,
    write_parquet_atomic,
)

logger = logging.getLogger(__name__)

_CONTEXT_RE = re.compile(r"^\s*Passage:\s*(?P<p>.*)\nQuestion:\s*(?P<q>.*?)\s*\nAnswer:\s*$", re.S)


def _ws(text: str) -> str:
    return " ".join(text.split())


def drop_query_id(passage: str, question: str) -> str:
    """Content id of a DROP question (whitespace-insensitive)."""
    digest = hashlib.sha256(f"{_ws(passage)}\n{_ws(question)}".encode()).hexdigest()[:16]
    return f"drop-{digest}"


def answer_text(answer: dict[str, Any] | None) -> str | None:
    """One DROP answer object as a string: the number, else the spans joined by " | ", else the
    date as "day month year" (empty parts dropped); None when the object is empty."""
    if not answer:
        return None
    number = answer.get("number")
    if number is not None and str(number).strip():
        return str(number).strip()
    spans = [str(s).strip() for s in (answer.get("spans") or []) if str(s).strip()]
    if spans:
        return f" {SPAN_SEPARATOR} ".join(spans)
    date = answer.get("date") or {}
    parts = [str(date.get(k) or "").strip() for k in ("day", "month", "year")]
    text = " ".join(p for p in parts if p)
    return text or None


def _validated(value: Any) -> list[dict[str, Any]]:
    """``validated_answers`` as a list of answer objects (hub exports store a dict of lists)."""
    if not value:
        return []
    if isinstance(value, dict):
        n = max((len(v) for v in value.values() if isinstance(v, list)), default=0)
        return [
            {k: (v[i] if isinstance(v, list) and i < len(v) else None) for k, v in value.items()}
            for i in range(n)
        ]
    return [v for v in value if isinstance(v, dict)]


class _Record:
    __slots__ = ("passage", "question", "golds", "source_ids")

    def __init__(self, passage: str, question: str) -> None:
        self.passage, self.question = passage, question
        self.golds: list[str] = []
        self.source_ids: list[str] = []


def _records_from_nested(
    doc: dict[str, Any], source: Path
) -> list[tuple[str, str, list[str], str]]:
    out = []
    for pid, section in doc.items():
        if not isinstance(section, dict) or "passage" not in section or "qa_pairs" not in section:
            raise BenchmarkDataError(
                f"{source}: passage {pid!r}: expected fields 'passage' and 'qa_pairs'"
            )
        for j, qa in enumerate(section["qa_pairs"]):
            if "question" not in qa:
                raise BenchmarkDataError(f"{source}: passage {pid!r} qa_pairs[{j}]: no 'question'")
            answers = [answer_text(qa.get("answer"))]
            answers += [answer_text(a) for a in _validated(qa.get("validated_answers"))]
            out.append(
                (
                    section["passage"],
                    qa["question"],
                    [a for a in answers if a],
                    str(qa.get("query_id", f"{pid}:{j}")),
                )
            )
    return out


def _records_from_rows(
    rows: list[dict[str, Any]], source: Path
) -> list[tuple[str, str, list[str], str]]:
    if not rows:
        raise BenchmarkDataError(f"{source}: no rows")
    first = rows[0]
    out = []
    if "context" in first and "ref_text" in first:
        for i, row in enumerate(rows):
            m = _CONTEXT_RE.match(str(row.get("context") or ""))
            if not m:
                raise BenchmarkDataError(
                    f"{source}: row {row_number(row, i)}: field 'context' is not "
                    "'Passage: …\\nQuestion: …\\nAnswer:'"
                )
            golds = [a.strip() for a in str(row.get("ref_text") or "").split("|")]
            golds.append(str(row.get("completion") or "").strip())
            out.append((m["p"], m["q"], [g for g in golds if g], f"row{row_number(row, i)}"))
        return out
    if (
        "passage" in first
        and "question" in first
        and ("answers_spans" in first or "answer" in first)
    ):
        for i, row in enumerate(rows):
            for name in ("passage", "question"):
                if not str(row.get(name) or "").strip():
                    raise BenchmarkDataError(
                        f"{source}: row {row_number(row, i)}: field {name!r} is empty"
                    )
            if "answers_spans" in row:
                spans = (row.get("answers_spans") or {}).get("spans") or []
                golds = [str(s).strip() for s in spans]
            else:
                golds = [answer_text(row.get("answer"))]
                golds += [answer_text(a) for a in _validated(row.get("validated_answers"))]
            qid = str(row.get("query_id") or f"row{row_number(row, i)}")
            out.append((row["passage"], row["question"], [g for g in golds if g], qid))
        return out
    columns = sorted(k for k in first if k != "__row__")
    raise BenchmarkDataError(
        f"{source}: unrecognised DROP columns {columns}; expected "
        "passage+question+answers_spans (hub), passage+question+answer[+validated_answers], or "
        "context+ref_text (flattened)"
    )


def items_from_source(path: Path, rows: list[dict[str, Any]] | None = None) -> list[Item]:
    """All DROP questions in a file (any supported format), merged by query_id, in file order.
    Questions without any accepted answer are skipped (they cannot be scored)."""
    if rows is None:
        name = path.name.lower()
        if name.endswith((".json", ".json.gz")):
            doc = read_json_file(path)
            if isinstance(doc, dict):
                raw = _records_from_nested(doc, path)
            elif isinstance(doc, list):
                raw = _records_from_rows(doc, path)
            else:
                raise BenchmarkDataError(f"{path}: expected a JSON object or list")
        else:
            raw = _records_from_rows(read_rows(path), path)
    else:
        raw = _records_from_rows(rows, path)

    merged: dict[str, _Record] = {}
    skipped = 0
    for passage, question, golds, source_id in raw:
        if not golds:
            skipped += 1
            continue
        qid = drop_query_id(passage, question)
        rec = merged.get(qid)
        if rec is None:
            rec = merged[qid] = _Record(passage.strip(), question.strip())
        rec.golds.extend(g for g in golds if g not in rec.golds)
        rec.source_ids.append(source_id)
    if skipped:
        logger.info("%s: skipped %d DROP questions without an accepted answer", path, skipped)
    if not merged:
        raise BenchmarkDataError(f"{path}: no DROP question with an accepted answer")
    return [
        Item(
            query_id=qid,
            question=rec.question,
            gold=tuple(rec.golds),
            task_type="span",
            context=rec.passage,
            meta={"source_ids": list(rec.source_ids)},
        )
        for qid, rec in merged.items()
    ]


def subset(items: list[Item], n_items: int | None, key: str = "drop800") -> list[Item]:
    """The ``n_items`` items with the smallest sha256(key:query_id) (all when None or fewer),
    returned in that hash order: independent of the source's row order."""
    ordered = sorted(items, key=lambda it: hashlib.sha256(f"{key}:{it.query_id}".encode()).digest())
    return ordered if n_items is None else ordered[:n_items]


@register_benchmark("drop800")
class Drop800(Benchmark):
    """DROP validation subset scored with DROP F1; option ``n_items`` (800; None = all)."""

    task_type = "span"
    default_options = {"n_items": 800}
    source = HubSource(
        benchmark="drop800",
        repo_id="ucinlp/drop",
        filename="data/validation-00000-of-00001.parquet",
        cache_name="drop_validation",
        formats="hub .parquet, original nested .json, or flattened .jsonl/.jsonl.gz",
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        n = self.options["n_items"]
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ValueError(
                f"drop800 option n_items must be a positive integer or None, got {n!r}"
            )

    def load(
        self, path: str | Path | None = None, *, cache_dir: str | Path | None = None
    ) -> list[Item]:
        if path is not None:
            items = items_from_source(Path(path).expanduser())
        else:
            rows, origin = resolve_rows(self.source, None, cache_dir)
            items = items_from_source(origin, rows)
        return subset(items, self.options["n_items"])

    def prepare_cache(
        self, path: str | Path | None = None, *, cache_dir: str | Path | None = None
    ) -> Path:
        """Store every question of ``path`` (any supported format) or the hub file in the local
        cache, in the hub's columns; each accepted answer becomes one element of
        ``answers_spans.spans`` (a multi-span answer stays one "a | b" string). Returns it."""
        if path is None:
            return fetch_to_cache(self.source, cache_dir)
        items = items_from_source(Path(path).expanduser())
        rows = [
            {
                "section_id": None,
                "query_id": (it.meta.get("source_ids") or [it.query_id])[0],
                "passage": it.context,
                "question": it.question,
                "answers_spans": {"spans": list(it.gold), "types": ["span"] * len(it.gold)},
            }
            for it in items
        ]
        return write_parquet_atomic(rows, self.source.cache_file(cache_dir))
