import polars as pl
import pytest

from dars.benchmarks import Item
from dars.benchmarks.rewrite_checks import check_rewrites, numbers_in, rewrite_validity_table

MATH = Item(
    "q1", "A box holds 12 red and 1,500 blue beads. How many beads in total?", "1512", "math"
)
MC = Item(
    "q2", "Which planet is largest?", "B", "mc", choices=("Mars", "Jupiter", "Venus", "Earth")
)
SPAN = Item(
    "q3",
    "How many goals were scored?",
    ("3",),
    "span",
    context="The home side scored twice before halftime and once after the break, winning 3-0.",
)


def test_numbers_are_normalised():
    assert numbers_in("12 red, 1,500 blue, 3/4 and -2.5") == ["12", "1500", "3/4", "-2.5"]


def test_math_rewrite_checks():
    rows = check_rewrites(
        MATH,
        [
            "There are 12 red beads and 1500 blue beads in a box; what is the total number?",
            "A box has twelve red and 1,500 blue beads. Total beads?",  # 12 spelled out
            "A box holds 12 red and 1,500 blue beads. How many beads in total?",  # the original
            "There are 12 red beads and 1500 blue beads in a box; what is the total number?",
            "",
        ],
        [0.9, 0.8, 1.0, 0.9, None],
    )
    assert [r["numbers_ok"] for r in rows] == [True, False, True, True, False]
    assert [r["dup_original"] for r in rows] == [False, False, True, False, False]
    assert [r["dup_rewrite"] for r in rows] == [False, False, False, True, False]
    assert [r["complete"] for r in rows] == [True, True, True, True, False]
    assert [r["review_flag"] for r in rows] == [False, True, True, True, True]


def test_structure_mc_options_and_span_passage():
    mc = check_rewrites(MC, ["Of the planets listed, which is the biggest?", "Largest?\nA) Mars"])
    assert [r["struct_ok"] for r in mc] == [True, False]
    span = check_rewrites(SPAN, ["What number of goals were scored?", SPAN.context + " Goals?"])
    assert [r["struct_ok"] for r in span] == [True, False]


def test_low_similarity_is_flagged_and_lengths_must_match():
    (row,) = check_rewrites(MC, ["Which of these planets is the largest one?"], [0.5])
    assert row["review_flag"] and row["struct_ok"]
    with pytest.raises(ValueError, match="2 rewrites but 1 similarities"):
        check_rewrites(MC, ["a?", "b?"], [0.9])


def test_validity_table_by_hand():
    df = pl.DataFrame(
        {
            "dataset": ["d"] * 4,
            "split": ["train", "train", "train", "test"],
            "query_id": ["a", "a", "b", "c"],
            "complete": [True, True, False, True],
            "dup_original": [False, True, False, False],
            "dup_rewrite": [False, False, False, False],
            "struct_ok": [True, True, True, False],
            "similarity": [0.9, 0.7, None, 0.8],
            "numbers_ok": [True, False, True, True],
            "review_flag": [False, True, True, True],
        }
    )
    t = rewrite_validity_table(df)
    assert t["split"].to_list() == ["train", "test"]
    train = t.row(0, named=True)
    assert (train["records"], train["rewrites"]) == (2, 3)
    assert train["complete"] == pytest.approx(2 / 3)
    assert train["orig_dup"] == pytest.approx(1 / 3)
    assert train["sim_mean"] == pytest.approx(0.8)
    assert train["num_preserved"] == pytest.approx(2 / 3)
    assert train["review_flag"] == pytest.approx(2 / 3)
