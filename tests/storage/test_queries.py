"""The query store of imported datasets: path, merge of repeated imports, conflicts named."""

from __future__ import annotations

import polars as pl
import pytest

from dars.storage import StorageError
from dars.storage.queries import merge_queries, query_conflicts, read_queries

Q = pl.DataFrame(
    {
        "dataset": ["ds", "ds"],
        "query_id": ["q1", "q2"],
        "split": ["train", "test"],
        "question": ["What is 1+1?", "What is 2+2?"],
        "context": [None, "a passage"],
        "gold": ["2", None],
        "task_type": ["math", None],
    }
)


def test_merge_writes_at_the_layout_path_and_adds_only_new_queries(tmp_path):
    path, added = merge_queries(tmp_path, "ds", Q)
    assert path == tmp_path / "queries" / "dataset=ds" / "queries.parquet"
    assert added == 2 and read_queries(tmp_path, "ds").sort("query_id").equals(Q)
    more = Q.head(1).vstack(Q.head(1).with_columns(query_id=pl.lit("q3")))
    _, added = merge_queries(tmp_path, "ds", more)  # q1 again (identical) + q3
    assert added == 1 and read_queries(tmp_path, "ds")["query_id"].sort().to_list() == [
        "q1",
        "q2",
        "q3",
    ]


def test_a_conflicting_query_is_named_and_nothing_is_written(tmp_path):
    merge_queries(tmp_path, "ds", Q)
    changed = Q.with_columns(question=pl.lit("another text"))
    problems = query_conflicts(tmp_path, "ds", changed)
    assert any("query 'q1': column 'question'" in p for p in problems)
    with pytest.raises(StorageError, match="differ from the stored ones"):
        merge_queries(tmp_path, "ds", changed)
    assert read_queries(tmp_path, "ds").sort("query_id").equals(Q)
    moved = Q.with_columns(split=pl.lit("train"))
    assert any("column 'split'" in p for p in query_conflicts(tmp_path, "ds", moved))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no imported queries for dataset 'ds'.*question"):
        read_queries(tmp_path, "ds")
    with pytest.raises(StorageError, match="another dataset"):
        merge_queries(tmp_path, "other", Q)
    with pytest.raises(StorageError, match=r"lack column\(s\) \['question'\]"):
        merge_queries(tmp_path, "ds", Q.drop("question"))
