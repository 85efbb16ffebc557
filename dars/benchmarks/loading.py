"""Load an experiment's datasets and split them, once per process.

A dataset is a registered benchmark (``source: benchmark``: its items are loaded and split by
seed) or a dataset imported into the run's store (``source: store``: its items are the stored
queries of ``dars.storage.queries``, with the split the import gave them).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dars.benchmarks.base import TASK_TYPES, Benchmark, Item, get, get_task_type

if TYPE_CHECKING:
    from dars.config import BenchmarkSpec, Experiment

Splits = dict[str, list[Item]]
_CACHE: dict[str, Splits] = {}
_LOCK = threading.Lock()


class StoreDataset(Benchmark):
    """A dataset imported with ``dars import``: its items are the stored queries and its scores
    came with the import, so nothing is prompted. Scoring (the validity table's rescoring) uses
    the task type the queries name, when they name one."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def load(self, path: str | Path | None = None, *, cache_dir: str | Path | None = None):
        raise TypeError(
            f"dataset {self.name!r} was imported: its items are read from the run's store "
            "(dars.benchmarks.loading.load_benchmark_splits with the run root)"
        )

    def task_type_for(self, item: Item | None = None) -> Any:
        if item is None or item.task_type not in TASK_TYPES:
            raise ValueError(
                f"imported dataset {self.name!r} names no task type for "
                f"{'its items' if item is None else repr(item.query_id)}: nothing can score or "
                "prompt it (import a task_type column to enable that)"
            )
        return get_task_type(item.task_type)


def benchmark_for(spec: BenchmarkSpec) -> Benchmark:
    """The benchmark object of a dataset of the experiment (a registered benchmark with its
    options, or the :class:`StoreDataset` of an imported one)."""
    if spec.source == "store":
        return StoreDataset(spec.name)
    return get(spec.name, **spec.options)


def _store_items(root: str | Path, dataset: str) -> Splits:
    from dars.storage.queries import read_queries

    frame = read_queries(root, dataset)
    splits: Splits = {"train": [], "test": []}
    for r in frame.iter_rows(named=True):
        task = r["task_type"] or ""
        gold: Any = r["gold"]
        if task and gold is not None:
            gold = get_task_type(task).gold_from_answers((gold,), None)
        splits[r["split"]].append(
            Item(
                query_id=r["query_id"],
                question=r["question"],
                gold=gold,
                task_type=task,
                context=r["context"],
            )
        )
    return splits


def load_benchmark_splits(spec: BenchmarkSpec, seed: int, root: str | Path | None = None) -> Splits:
    """Items of one dataset split into ``{"train": [...], "test": [...]}``.

    A benchmark's split is deterministic in (query ids, seed, n_train, n_test); an imported
    dataset's split is the stored one (``root``: the run directory holding it). Results are
    memoised per process (an imported dataset's until its queries file changes) because every
    shard of a run needs the same items.
    """
    if spec.source == "store":
        if root is None:
            raise ValueError(f"dataset {spec.name!r} is imported: its items need the run root")
        from dars.storage import RunLayout

        path = RunLayout(root).queries_file(spec.name)
        stamp = path.stat().st_mtime_ns if path.is_file() else None
        key = json.dumps(["store", str(path.resolve()), stamp])
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = _store_items(root, spec.name)
            return _CACHE[key]
    key = json.dumps([spec.model_dump(), seed], sort_keys=True, default=str)
    with _LOCK:
        if key not in _CACHE:
            bench = benchmark_for(spec)
            items = bench.load(spec.path)
            _CACHE[key] = bench.split(items, n_train=spec.n_train, n_test=spec.n_test, seed=seed)
        return _CACHE[key]


def load_splits(experiment: Experiment) -> dict[str, Splits]:
    """``{dataset: {"train": items, "test": items}}`` for every dataset of the experiment."""
    return {
        b.name: load_benchmark_splits(b, experiment.seed, experiment.root)
        for b in experiment.benchmarks
    }


def items_by_id(splits: Splits) -> dict[str, Item]:
    return {it.query_id: it for items in splits.values() for it in items}
