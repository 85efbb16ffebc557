"""The benchmark interface: items, scores, the train/test split and the registry.

A benchmark turns a source (the hub cache, a local file, or generated data) into ``Item`` objects,
renders decoding and rewrite prompts for them, and scores a model's response against the gold
answer. Everything downstream (collection, the simulated pool, supervision) only sees this
interface.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

TaskType = Literal["mc", "math", "span"]
TASK_TYPES: tuple[str, ...] = ("mc", "math", "span")


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    ``query_id`` is stable across runs and machines (derived from the source's own id or a hash of
    the content, never from row order). ``gold`` is the benchmark's natural gold form: a letter for
    multiple choice, an answer string for math, a tuple of accepted answer strings for span tasks.
    ``choices`` are the options in display order (letters A, B, … in that order); ``context`` is a
    passage the question refers to (kept fixed by rewrites).
    """

    query_id: str
    question: str
    gold: Any
    task_type: TaskType
    context: str | None = None
    choices: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_record(self) -> dict[str, Any]:
        """A flat, Parquet-friendly dict: ``gold`` and ``meta`` are JSON strings (span gold is a
        list of accepted answers), ``choices`` a list or None. Inverse: ``Item.from_record``."""
        gold = list(self.gold) if isinstance(self.gold, tuple) else self.gold
        return {
            "query_id": self.query_id,
            "question": self.question,
            "gold": json.dumps(gold, ensure_ascii=False),
            "task_type": self.task_type,
            "context": self.context,
            "choices": list(self.choices) if self.choices is not None else None,
            "meta": json.dumps(self.meta, ensure_ascii=False, default=str),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Item:
        gold = json.loads(rec["gold"])
        if isinstance(gold, list):
            gold = tuple(gold)
        choices = rec.get("choices")
        meta = rec.get("meta")
        return cls(
            query_id=rec["query_id"],
            question=rec["question"],
            gold=gold,
            task_type=rec["task_type"],
            context=rec.get("context"),
            choices=tuple(choices) if choices is not None else None,
            meta=json.loads(meta) if meta else {},
        )


class BenchmarkDataError(ValueError):
    """A benchmark source row is malformed; the message names the file, the row and the field."""


class BenchmarkUnavailableError(FileNotFoundError):
    """No local copy of a benchmark and the hub cannot be used; the message says how to provide
    the file (``path=`` option, the cache location, a hub token for gated datasets)."""


@dataclass(frozen=True)
class Score:
    """The score of one response: ``value`` in [0, 1]; ``parsed`` the extracted final answer."""

    value: float
    parsed: str | None
    parse_ok: bool


def split_items(
    items: Sequence[Item], *, n_train: int = 200, n_test: int | None = None, seed: int = 0
) -> dict[str, list[Item]]:
    """Deterministic train/test split.

    Items are ordered by sha256(seed, query_id), so the split depends only on the ids and the seed,
    not on the order the source lists them in. The first ``n_train`` are train, the next ``n_test``
    (all remaining when None) are test. Raises if there are fewer items than ``n_train``.
    """
    ids = [it.query_id for it in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate query_id in benchmark items: {dup}")
    if len(items) < n_train:
        raise ValueError(f"benchmark has {len(items)} items, fewer than n_train={n_train}")

    def key(it: Item) -> str:
        return hashlib.sha256(f"{seed}:{it.query_id}".encode()).hexdigest()

    ordered = sorted(items, key=key)
    train = ordered[:n_train]
    rest = ordered[n_train:]
    test = rest if n_test is None else rest[:n_test]
    return {"train": train, "test": test}


class Benchmark(ABC):
    """Base class of every benchmark. Subclasses set ``task_type`` and, if they take options,
    ``default_options`` (every accepted option with its default); ``name`` is the registry name
    (set by ``get``, since one class may be registered under several names)."""

    name: str = ""
    task_type: TaskType = "mc"
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            valid = ", ".join(sorted(self.default_options)) or "none"
            raise ValueError(
                f"benchmark {self.name or type(self).__name__!r}: unknown option(s) {unknown}; "
                f"valid options: {valid}"
            )
        self.options = {**self.default_options, **options}

    @abstractmethod
    def load(
        self, path: str | Path | None = None, *, cache_dir: str | Path | None = None
    ) -> list[Item]:
        """Return all items, from ``path`` if given, else from the local cache (or the source)."""

    def split(
        self, items: Sequence[Item], *, n_train: int = 200, n_test: int | None = None, seed: int = 0
    ) -> dict[str, list[Item]]:
        return split_items(items, n_train=n_train, n_test=n_test, seed=seed)

    @abstractmethod
    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        """Chat messages asking a model to answer ``item``; ``question`` replaces the original
        question text (a rewrite) while choices/passage stay as they are."""

    @abstractmethod
    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        """Chat messages asking the rewriter for ``n`` meaning-preserving rewrites of the
        question (answered as a JSON array of ``n`` strings; see ``prompts.parse_rewrites``)."""

    @abstractmethod
    def score_answer(self, response: str, gold: Any) -> Score:
        """Score one response against the gold answer in this benchmark's natural form."""

    def score(self, response: str, item: Item) -> Score:
        return self.score_answer(response, item.gold)


_REGISTRY: dict[str, Callable[..., Benchmark]] = {}


def register_benchmark(name: str) -> Callable[[type[Benchmark]], type[Benchmark]]:
    """Class decorator: ``@register_benchmark("math500")``. Duplicate names are rejected."""

    def deco(cls: type[Benchmark]) -> type[Benchmark]:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} is already registered")
        if cls.__dict__.get("name"):
            # A class registered under a second name: register a named subclass, so each
            # instance (and its error messages) carries the name it was asked for.
            _REGISTRY[name] = type(cls.__name__, (cls,), {"name": name, "__doc__": cls.__doc__})
        else:
            cls.name = name
            _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **options: Any) -> Benchmark:
    """Instantiate a registered benchmark; unknown names list the valid ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; available: {', '.join(available())}") from None
    bench = factory(**options)
    bench.name = name
    return bench


_DEFAULT_INSTANCES: dict[str, Benchmark] = {}


def score(name: str, response: str, item: Item) -> Score:
    """Score ``response`` for ``item`` with benchmark ``name``'s scorer (default options)."""
    bench = _DEFAULT_INSTANCES.get(name)
    if bench is None:
        bench = _DEFAULT_INSTANCES[name] = get(name)
    return bench.score(response, item)
