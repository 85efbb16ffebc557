"""Scoring validity report on hand-made observation frames, and against a slow reference."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.benchmarks import Item
from dars.benchmarks.validity import scoring_validity

MC_ITEMS = [Item("q1", "?", "A", "mc", choices=("a", "b", "c", "d"))]
SPAN_ITEMS = [Item("s1", "?", ("Bears",), "span", context="The Bears won.")]


def _obs(rows):
    cols = ["dataset", "split", "query_id", "model", "rewrite_id", "decode_id", "response",
            "parse_ok", "score", "status"]  # fmt: skip
    return pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])


def test_hand_made_frame():
    obs = _obs(
        [
            ("gpqa", "train", "q1", "m1", -1, 0, "Final Answer: A", True, 1.0, "ok"),
            ("gpqa", "train", "q1", "m1", -1, 1, "Final Answer: B", True, 1.0, "ok"),  # wrong
            ("gpqa", "train", "q1", "m1", -1, 1, "Final Answer: B", True, 0.0, "ok"),  # dup key
            ("gpqa", "train", "q1", "m2", -1, 0, "no idea", False, 0.0, "ok"),
            ("gpqa", "train", "q1", "m2", -1, 1, None, None, None, "failed"),
            ("drop800", "test", "s1", "m1", 0, 0, "Final Answer: the Bears", True, 1.0, "ok"),
            ("drop800", "test", "s1", "m1", 1, 0, "Final Answer: Bears won", True, 0.67, "ok"),
            ("drop800", "test", "s1", "m1", 2, 0, "Final Answer: x", True, float("nan"), "ok"),
        ]
    )
    rep = scoring_validity(obs, {"gpqa": MC_ITEMS, "drop800": SPAN_ITEMS})
    g = rep.filter(pl.col("dataset") == "gpqa").row(0, named=True)
    assert g["rows"] == 5 and g["ok_rows"] == 4
    assert g["parse_success"] == 0.75
    assert g["finite"] == 1.0 and g["in_unit_interval"] == 1.0 and g["score_type"] == 1.0
    assert (g["rescored"], g["rescore_diffs"], g["rescore_agreement"]) == (4, 1, 0.75)
    assert g["duplicate_keys"] == 1
    d = rep.filter(pl.col("dataset") == "drop800").row(0, named=True)
    assert d["rows"] == 3 and d["finite"] == pytest.approx(2 / 3)
    assert d["in_unit_interval"] == pytest.approx(2 / 3) and d["score_type"] == pytest.approx(2 / 3)
    # "Bears won" vs "Bears": F1 0.67 as stored; the NaN row disagrees with its rescore of 0
    assert (d["rescored"], d["rescore_diffs"]) == (3, 1)
    assert rep.get_column("dataset").to_list() == ["drop800", "gpqa"]


def test_without_items_nothing_is_rescored_but_task_type_comes_from_registry():
    obs = _obs([("math500", "test", "x", "m", -1, 0, "Final Answer: 1", True, 0.5, "ok")])
    row = scoring_validity(obs).row(0, named=True)
    assert row["rescored"] == 0 and row["rescore_agreement"] is None
    assert row["score_type"] == 0.0  # 0.5 is not a valid math score
    unknown = _obs([("mine", "test", "x", "m", -1, 0, "r", True, 0.5, "ok")])
    assert scoring_validity(unknown).row(0, named=True)["score_type"] is None


def test_imported_rows_without_a_response_or_task_type_are_not_rescored():
    """Imported generations may carry only scores: rescoring "" would score 0 and report a false
    disagreement, so such rows (and items of no registered task type) are not rescored."""
    obs = _obs(
        [
            ("gpqa", "train", "q1", "m1", -1, 0, None, True, 1.0, "ok"),
            ("mine", "train", "z", "m1", -1, 0, "Final Answer: 3", True, 1.0, "ok"),
        ]
    )
    untyped = [Item("z", "?", "3", "")]
    rep = scoring_validity(obs, {"gpqa": MC_ITEMS, "mine": untyped})
    assert rep["rescored"].to_list() == [0, 0] and rep["rescore_diffs"].to_list() == [0, 0]


def test_status_column_optional_and_required_columns_checked():
    obs = _obs([("gpqa", "train", "q1", "m", -1, 0, "Final Answer: A", True, 1.0, "ok")])
    row = scoring_validity(obs.drop("status"), {"gpqa": MC_ITEMS}).row(0, named=True)
    assert row["ok_rows"] == 1 and row["rescore_agreement"] == 1.0
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['score'\]"):
        scoring_validity(obs.drop("score"))


def _reference(rows, task):
    ok = [r for r in rows if r["status"] == "ok"]
    fin = [r["score"] is not None and math.isfinite(r["score"]) for r in ok]
    unit = [f and 0 <= r["score"] <= 1 for f, r in zip(fin, ok, strict=True)]
    typed = [
        u and (task == "span" or r["score"] in (0.0, 1.0)) for u, r in zip(unit, ok, strict=True)
    ]
    keys = [tuple(r[k] for k in ("dataset", "split", "query_id", "model", "rewrite_id",
                                 "decode_id")) for r in rows]  # fmt: skip
    mean = (lambda xs: sum(xs) / len(xs)) if ok else (lambda xs: None)
    return {
        "rows": len(rows),
        "ok_rows": len(ok),
        "parse_success": mean([bool(r["parse_ok"]) for r in ok]),
        "finite": mean(fin),
        "in_unit_interval": mean(unit),
        "score_type": mean(typed),
        "duplicate_keys": len(keys) - len(set(keys)),
    }


ROW = st.fixed_dictionaries(
    {
        "dataset": st.just("demo_span"),
        "split": st.just("train"),
        "query_id": st.sampled_from(["a", "b"]),
        "model": st.sampled_from(["m1", "m2"]),
        "rewrite_id": st.integers(-1, 1),
        "decode_id": st.integers(0, 1),
        "response": st.just("Final Answer: x"),
        "parse_ok": st.booleans(),
        "score": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32),
                           st.sampled_from([0.0, 0.5, 1.0])),
        "status": st.sampled_from(["ok", "ok", "failed"]),
    }
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=12))
def test_matches_slow_reference(rows):
    obs = pl.DataFrame(rows, schema_overrides={"score": pl.Float64})
    got = scoring_validity(obs).row(0, named=True)
    want = _reference(rows, "span")
    for key, value in want.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value), key
