"""Loading an experiment's benchmarks: deterministic splits, memoised per process."""

from __future__ import annotations

import pytest

import dars.benchmarks as B
from dars.benchmarks.loading import items_by_id, load_benchmark_splits, load_splits
from dars.config import BenchmarkSpec, experiment_from_dict


def _spec(**over) -> BenchmarkSpec:
    return BenchmarkSpec(
        **{"name": "demo_mc", "n_train": 6, "n_test": 4, "options": {"n_items": 12}, **over}
    )


def test_splits_follow_the_spec_and_are_memoised():
    splits = load_benchmark_splits(_spec(), seed=0)
    assert (len(splits["train"]), len(splits["test"])) == (6, 4)
    assert load_benchmark_splits(_spec(), seed=0) is splits  # every shard shares one load
    items = B.get("demo_mc", n_items=12).load()
    assert splits == B.get("demo_mc").split(items, n_train=6, n_test=4, seed=0)
    other = load_benchmark_splits(_spec(), seed=1)
    assert other is not splits and other != splits


def test_load_splits_covers_every_benchmark_and_items_by_id():
    exp = experiment_from_dict(
        {
            "benchmarks": [
                {"name": "demo_mc", "n_train": 3, "options": {"n_items": 5}},
                {"name": "demo_span", "n_train": 2, "n_test": 1, "options": {"n_items": 5}},
            ],
            "pool": {"models": [{"name": "a", "litellm_model": "openai/gpt-4o-mini"}]},
            "rewriter": {"name": "rw", "litellm_model": "openai/gpt-4o"},
        }
    )
    splits = load_splits(exp)
    assert sorted(splits) == ["demo_mc", "demo_span"]
    assert [len(splits["demo_mc"][s]) for s in ("train", "test")] == [3, 2]
    by_id = items_by_id(splits["demo_span"])
    assert len(by_id) == 3 and all(it.task_type == "span" for it in by_id.values())


def test_an_imported_dataset_loads_its_stored_queries_and_split(tmp_path):
    import polars as pl

    from dars.benchmarks.loading import StoreDataset, benchmark_for, load_splits
    from dars.config import experiment_from_dict
    from dars.storage.queries import merge_queries

    merge_queries(
        tmp_path,
        "mine",
        pl.DataFrame(
            {
                "dataset": ["mine"] * 3,
                "query_id": ["a", "b", "c"],
                "split": ["train", "train", "test"],
                "question": ["Qa", "Qb", "Qc"],
                "context": [None, "passage", None],
                "gold": ["1", None, "x"],
                "task_type": ["math", None, "span"],
            }
        ),
    )
    exp = experiment_from_dict(
        {
            "root": str(tmp_path),
            "benchmarks": [{"name": "mine", "source": "store"}],
            "pool": {"models": [{"name": "m1"}, {"name": "m2"}]},
        }
    )
    splits = load_splits(exp)["mine"]
    assert [it.query_id for it in splits["train"]] == ["a", "b"]
    a, b = splits["train"]
    assert (a.question, a.gold, a.task_type) == ("Qa", "1", "math")
    assert (b.context, b.task_type) == ("passage", "")
    assert splits["test"][0].gold == ("x",)  # span gold: a tuple of accepted answers
    bench = benchmark_for(exp.benchmark("mine"))
    assert isinstance(bench, StoreDataset) and bench.score("Final Answer: 1", a).value == 1.0
    with pytest.raises(ValueError, match="names no task type"):
        bench.score("x", b)
