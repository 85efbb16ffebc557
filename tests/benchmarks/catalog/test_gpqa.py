"""GPQA: the loader on made-up rows in the hub schema (GPQA is not republished), the fixed
option shuffle, errors and the cache."""

from __future__ import annotations

import pytest

import dars.benchmarks as B
from dars.benchmarks.base import BenchmarkDataError
from dars.benchmarks.catalog.gpqa import shuffled_order


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_gpqa_loads_made_up_rows(tmp_path, suffix, gpqa_rows, write_table):
    items = B.get("gpqa").load(path=write_table(gpqa_rows, tmp_path / f"gpqa{suffix}"))
    assert [it.query_id for it in items] == ["recA1", "recB2", "recC3"]
    for row, it in zip(gpqa_rows, items, strict=True):
        assert it.task_type == "mc" and len(it.choices) == 4
        assert it.choices[ord(it.gold) - ord("A")] == row["Correct Answer"]
        assert sorted(it.choices) == sorted(
            [row["Correct Answer"]] + [row[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
        )
        assert it.meta["domain"] == row["High-level domain"]
        # the gold letter is what the scorer accepts
        assert B.score("gpqa", f"Final Answer: {it.gold}", it).value == 1.0


def test_gpqa_shuffle_is_deterministic_and_varies(tmp_path, gpqa_rows, write_table):
    rows = [dict(gpqa_rows[0], **{"Record ID": f"rec{i}"}) for i in range(40)]
    path = write_table(rows, tmp_path / "g.parquet")
    a = B.get("gpqa").load(path=path)
    b = B.get("gpqa").load(path=write_table(rows[::-1], tmp_path / "g_rev.parquet"))
    by_id = {it.query_id: it for it in b}
    assert all(by_id[it.query_id].choices == it.choices for it in a)
    assert len({it.gold for it in a}) == 4  # the correct answer is not always in one slot
    assert shuffled_order("rec0") == shuffled_order("rec0")


def test_gpqa_without_record_id_hashes_question(tmp_path, gpqa_rows, write_table):
    rows = [{k: v for k, v in r.items() if k != "Record ID"} for r in gpqa_rows]
    items = B.get("gpqa").load(path=write_table(rows, tmp_path / "g.csv"))
    again = B.get("gpqa").load(path=write_table(rows[::-1], tmp_path / "g2.csv"))
    assert all(it.query_id.startswith("gpqa-") for it in items)
    assert sorted(it.query_id for it in items) == sorted(it.query_id for it in again)


def test_gpqa_errors_name_file_row_and_field(tmp_path, gpqa_rows, write_table):
    rows = [dict(r) for r in gpqa_rows]
    rows[1]["Incorrect Answer 2"] = "  "
    path = write_table(rows, tmp_path / "bad.csv")
    with pytest.raises(BenchmarkDataError, match=r"bad\.csv: row 2: field 'Incorrect Answer 2'"):
        B.get("gpqa").load(path=path)
    no_col = write_table([{k: v for k, v in r.items() if k != "Correct Answer"} for r in gpqa_rows],
                    tmp_path / "nocol.parquet")  # fmt: skip
    with pytest.raises(BenchmarkDataError, match=r"nocol\.parquet: missing column\(s\) \['Correct"):
        B.get("gpqa").load(path=no_col)


def test_prepare_cache_validates_before_writing(cache_dir, tmp_path, gpqa_rows, write_table):
    no_question = [{k: v for k, v in gpqa_rows[0].items() if k != "Question"}]
    bad = write_table(no_question, tmp_path / "b.csv")
    with pytest.raises(BenchmarkDataError):
        B.get("gpqa").prepare_cache(bad)
    assert not (cache_dir / "gpqa_main.parquet").exists()
    good = write_table(gpqa_rows, tmp_path / "g.csv")
    B.get("gpqa").prepare_cache(good)
    assert [it.query_id for it in B.get("gpqa").load()] == ["recA1", "recB2", "recC3"]
