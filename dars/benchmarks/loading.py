"""Load an experiment's benchmarks and split them, once per process."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from dars.benchmarks.base import Item, get

if TYPE_CHECKING:
    from dars.config import BenchmarkSpec, Experiment

Splits = dict[str, list[Item]]
_CACHE: dict[str, Splits] = {}
_LOCK = threading.Lock()


def load_benchmark_splits(spec: BenchmarkSpec, seed: int) -> Splits:
    """Items of one benchmark split into ``{"train": [...], "test": [...]}``.

    The split is deterministic in (query ids, seed, n_train, n_test); results are memoised per
    process because every decode shard of a run needs the same items.
    """
    key = json.dumps([spec.model_dump(), seed], sort_keys=True, default=str)
    with _LOCK:
        if key not in _CACHE:
            bench = get(spec.name, **spec.options)
            items = bench.load(spec.path)
            _CACHE[key] = bench.split(items, n_train=spec.n_train, n_test=spec.n_test, seed=seed)
        return _CACHE[key]


def load_splits(experiment: Experiment) -> dict[str, Splits]:
    """``{dataset: {"train": items, "test": items}}`` for every benchmark of the experiment."""
    return {b.name: load_benchmark_splits(b, experiment.seed) for b in experiment.benchmarks}


def items_by_id(splits: Splits) -> dict[str, Item]:
    return {it.query_id: it for items in splits.values() for it in items}
