"""The benchmark interface: items, scores, the train/test split, task types and benchmarks.

Two kinds of plugin, each behind one :class:`dars.registry.Registry`:

* a **task type** (``TASK_TYPES``: ``mc``, ``math``, ``span``) is ONE object, an instance of
  :class:`TaskType`, that owns everything depending on the kind of question: decode and rewrite
  prompts, scoring a response against the gold, the structure check of a rewrite, whether scores
  are binary, how a user's file gives the gold, and the answers the simulated pool writes. The
  built-ins are the modules of ``dars.benchmarks.task_types`` (module name = task type, imported
  on first use); others come from the entry-point group ``dars.task_types``;
* a **benchmark** (``BENCHMARKS``) is a :class:`Benchmark` subclass that loads items from its
  source and declares its task type, from whose object it gets prompts and scoring. The built-ins
  are the modules of ``dars.benchmarks.catalog`` (``demo`` registers three names, ``local`` two);
  others come from the entry-point group ``dars.benchmarks``.

Everything downstream (collection, the simulated pool, supervision) only sees this interface.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dars.benchmarks.parsing import FINAL_LINE
from dars.registry import Registry, UnknownNameError


@dataclass(frozen=True)
class Item:
    """One benchmark question.

    ``query_id`` is stable across runs and machines (derived from the source's own id or a hash of
    the content, never from row order). ``gold`` is the benchmark's natural gold form: a letter for
    multiple choice, an answer string for math, a tuple of accepted answer strings for span tasks.
    ``choices`` are the options in display order (letters A, B, … in that order); ``context`` is a
    passage the question refers to (kept fixed by rewrites). ``task_type`` names the registered
    :class:`TaskType` that renders its prompts and scores its responses.
    """

    query_id: str
    question: str
    gold: Any
    task_type: str
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


# ------------------------------------------------------------------------------------------------
# task types


class TaskType(ABC):
    """Everything that depends on the kind of question (multiple choice, math, span, …).

    One instance per task type is registered (``register_task_type(MyType())`` in
    ``dars/benchmarks/task_types/<name>.py``, or in a module named by a ``dars.task_types`` entry
    point); benchmarks, prompts, scoring, the validity checks and the simulated pool ask it instead
    of branching on ``Item.task_type``. Subclasses set the class attributes and implement the
    abstract methods; the others have defaults that fit most task types.
    """

    #: The registry name, equal to ``Item.task_type`` of its items.
    name: ClassVar[str] = ""
    #: Every score is exactly 0 or 1 (checked by the scoring validity report); False: partial
    #: credit, any value in [0, 1].
    binary_scores: ClassVar[bool] = True
    #: Items carry answer options (``Item.choices``); a user's file may give ``choices`` only for
    #: such task types, and must for them.
    has_choices: ClassVar[bool] = False
    #: The gold is a tuple of accepted answers (a file may list several), not one answer.
    several_answers: ClassVar[bool] = False

    # -- items ----------------------------------------------------------------------------------
    def check_item(self, item: Item) -> None:
        """Raise ValueError unless ``item`` is of this task type and valid for it."""
        if item.task_type != self.name:
            raise ValueError(
                f"item {item.query_id!r} has task_type {item.task_type!r}, not {self.name}"
            )
        self.validate_item(item)

    def validate_item(self, item: Item) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Raise ValueError naming the item when it lacks what this task type needs (an mc item
        has choices); by default every item of the type is valid."""

    def gold_from_answers(self, answers: tuple[str, ...], choices: Sequence[str] | None) -> Any:
        """The gold in this task type's natural form from a user's file: ``answers`` are the
        row's accepted answers (non-empty strings; exactly one unless ``several_answers``),
        ``choices`` its options (only when ``has_choices``). Raises ValueError whose message
        completes "field 'answer' …" when an answer cannot be read."""
        return tuple(answers) if self.several_answers else answers[0]

    # -- prompts --------------------------------------------------------------------------------
    @abstractmethod
    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        """Chat messages asking a model to answer ``item``; ``question`` replaces the original
        question text (a rewrite) while the fixed parts (options, passage) stay as they are."""

    @abstractmethod
    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        """Chat messages asking the rewriter for ``n`` meaning-preserving rewrites of the
        question under this task type's rules, with the fixed parts shown but not rewritten."""

    # -- scoring --------------------------------------------------------------------------------
    @abstractmethod
    def score_answer(
        self, response: str, gold: Any, *, choices: Sequence[str] | None = None
    ) -> Score:
        """Score one response against the gold in its natural form; ``choices`` are the item's
        options in display order (used by task types that have them)."""

    def score(self, response: str, item: Item) -> Score:
        """Score one response to ``item``."""
        return self.score_answer(response, item.gold, choices=item.choices)

    # -- rewrite checks -------------------------------------------------------------------------
    def rewrite_structure_ok(self, item: Item, rewrite: str) -> bool:
        """The task's structural constraint on a rewrite of ``item`` (checked on top of the
        length and completeness rules every rewrite has); by default none."""
        return True

    # -- the simulated pool ---------------------------------------------------------------------
    def gold_text(self, item: Item) -> str:
        """The gold as the text a correct response gives on its final-answer line."""
        return str(item.gold)

    @abstractmethod
    def wrong_answer(self, item: Item, u: float) -> str:
        """A plausible wrong answer to ``item`` that scores 0, chosen by the uniform draw ``u``
        in [0, 1) (the same ``u`` always gives the same answer)."""

    def partial_answer(self, item: Item) -> tuple[str | None, float]:
        """An answer earning partial credit and its score; (None, 0.0) when the task type has
        no partial credit or the item no such answer."""
        return None, 0.0

    def final_line(self, answer: str) -> str:
        """The last line of a response giving ``answer`` (what the decode prompt asks for)."""
        return f"{FINAL_LINE} {answer}"

    def __repr__(self) -> str:
        return f"<task type {self.name!r} ({type(self).__module__}.{type(self).__qualname__})>"


#: Registered task types by name (built-ins: the modules of ``dars.benchmarks.task_types``).
TASK_TYPES: Registry[TaskType] = Registry(
    "task type",
    TaskType,
    instances=True,
    package="dars.benchmarks.task_types",
    module_per_entry=True,
    group="dars.task_types",
)


def register_task_type(task: TaskType) -> TaskType:
    """Register ``task`` under ``task.name`` (duplicates are rejected) and return it."""
    if not task.name:
        raise ValueError(f"task type {task!r} has no name; set the class attribute `name`")
    if not type(task).__module__.startswith(f"{TASK_TYPES.package}."):
        # Built-ins are imported on first use only, so import one of the same name now: the
        # clash is reported here, not later when the built-in is first asked for.
        module = f"{TASK_TYPES.package}.{task.name}"
        if task.name.isidentifier() and importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    TASK_TYPES.add(task.name, task)
    return task


def get_task_type(name: str) -> TaskType:
    """The registered task type ``name``; unknown names list the available ones."""
    return TASK_TYPES.get(name)


def task_type_of(item: Item) -> TaskType:
    """The task type of ``item``; an unknown one is reported with the item's id."""
    try:
        return TASK_TYPES.get(item.task_type)
    except UnknownNameError as err:
        raise UnknownNameError(f"item {item.query_id!r}: {err}") from None


# ------------------------------------------------------------------------------------------------
# benchmarks


class Benchmark(ABC):
    """Base class of every benchmark: loads items and declares their task type.

    Subclasses implement ``load``, set ``task_type`` (a registered task type's name, whose object
    renders the prompts and scores the responses) and, if they take options, ``default_options``
    (every accepted option with its default); ``name`` is the registry name (set by ``get``,
    since one class may be registered under several names). A benchmark of an existing task type
    is one module in ``dars/benchmarks/catalog/`` (or a ``dars.benchmarks`` entry point).
    """

    name: str = ""
    #: Name of the registered task type of every item; None when only the items know it (the
    #: user-file benchmark before ``load``).
    task_type: str | None = None
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
        if self.task_type is not None:
            get_task_type(self.task_type)  # an unknown task type fails here, listing valid ones

    def loads_offline(self, path: str | Path | None = None) -> bool:
        """Whether ``load(path)`` reads only local data (a generated benchmark, a given file,
        the local cache): config validation then loads the items to check the split sizes. A
        benchmark with a hub ``source`` (:class:`dars.benchmarks.sources.HubSource`) and
        neither a ``path`` nor a cached copy would download, so it is not loaded then."""
        source = getattr(self, "source", None)
        if path is not None or source is None:
            return True
        return Path(source.cache_file()).is_file()

    @abstractmethod
    def load(
        self, path: str | Path | None = None, *, cache_dir: str | Path | None = None
    ) -> list[Item]:
        """Return all items, from ``path`` if given, else from the local cache (or the source)."""

    def split(
        self, items: Sequence[Item], *, n_train: int = 200, n_test: int | None = None, seed: int = 0
    ) -> dict[str, list[Item]]:
        return split_items(items, n_train=n_train, n_test=n_test, seed=seed)

    def task_type_for(self, item: Item | None = None) -> TaskType:
        """The task-type object that renders prompts for and scores this benchmark's items (the
        declared ``task_type``'s; ``item`` matters to benchmarks that declare none)."""
        if self.task_type is None:
            raise ValueError(f"benchmark {self.name or type(self).__name__!r} has no task_type")
        return get_task_type(self.task_type)

    def decode_messages(self, item: Item, question: str | None = None) -> list[dict[str, str]]:
        """Chat messages asking a model to answer ``item``; ``question`` replaces the original
        question text (a rewrite) while choices/passage stay as they are."""
        return self.task_type_for(item).decode_messages(item, question)

    def rewrite_messages(self, item: Item, n: int) -> list[dict[str, str]]:
        """Chat messages asking the rewriter for ``n`` meaning-preserving rewrites of the
        question (answered as a JSON array of ``n`` strings; see ``prompts.parse_rewrites``)."""
        return self.task_type_for(item).rewrite_messages(item, n)

    def score_answer(self, response: str, gold: Any) -> Score:
        """Score one response against the gold answer in this benchmark's natural form."""
        return self.task_type_for().score_answer(response, gold)

    def score(self, response: str, item: Item) -> Score:
        """Score one response to ``item`` (with everything the item knows, e.g. its options)."""
        return self.task_type_for(item).score(response, item)


#: Registered benchmark classes by name (built-ins: the modules of ``dars.benchmarks.catalog``).
BENCHMARKS: Registry[type[Benchmark]] = Registry(
    "benchmark", Benchmark, package="dars.benchmarks.catalog", group="dars.benchmarks"
)


def register_benchmark(name: str) -> Callable[[type[Benchmark]], type[Benchmark]]:
    """Class decorator: ``@register_benchmark("math500")``. Duplicate names are rejected."""

    def deco(cls: type[Benchmark]) -> type[Benchmark]:
        if not cls.__module__.startswith(f"{BENCHMARKS.package}."):
            # Load the built-ins first (they register while the registry imports them), so a
            # clash with one is reported here.
            BENCHMARKS.names()
        if cls.__dict__.get("name"):
            # A class registered under a second name: register a named subclass, so each
            # instance (and its error messages) carries the name it was asked for.
            BENCHMARKS.add(name, type(cls.__name__, (cls,), {"name": name, "__doc__": cls.__doc__}))
        else:
            BENCHMARKS.add(name, cls)
            cls.name = name
        return cls

    return deco


def available() -> list[str]:
    """Names of every registered benchmark, sorted."""
    return BENCHMARKS.names()


def get(name: str, **options: Any) -> Benchmark:
    """Instantiate a registered benchmark; unknown names list the valid ones."""
    bench = BENCHMARKS.get(name)(**options)
    bench.name = name
    return bench


_DEFAULT_INSTANCES: dict[str, Benchmark] = {}


def score(name: str, response: str, item: Item) -> Score:
    """Score ``response`` for ``item`` with benchmark ``name``'s scorer (default options)."""
    bench = _DEFAULT_INSTANCES.get(name)
    if bench is None:
        bench = _DEFAULT_INSTANCES[name] = get(name)
    return bench.score(response, item)
