"""The ablation experiment (Table 2): the table layout and the compute on the hand example of
tests/evaluation/hand_example.py (the I/O of the experiment is in tests/tasks/test_evaluate.py)."""

from __future__ import annotations

import math

import polars as pl
import pytest

from dars.config import Evaluation
from dars.evaluation.experiments.ablation import SPEC, TABLE2_SUPERVISIONS, ablation_table
from dars.evaluation.experiments.base import ROUTES, VIEW_UTILITIES, MissingInputError
from tests.evaluation.hand_example import DS, TRAINED, U, experiment, routes, view_util


def _ablation_rows(values: dict[tuple[str, str], tuple[float, float]]) -> pl.DataFrame:
    rows = [
        {"dataset": ds, "view": view, "family": "mirt", "supervision": supervision, "U": u}
        for (ds, supervision), pair in values.items()
        for view, u in zip(("test_rewrite", "test_decode"), pair, strict=True)
    ]
    return pl.DataFrame(rows)


def _inputs(trained: dict[str, list[tuple[str, str]]] = TRAINED) -> dict:
    return {
        VIEW_UTILITIES: {DS: view_util()},
        ROUTES: {
            (DS, "mirt", supervision): routes(draws) for supervision, draws in trained.items()
        },
    }


def _exp(n_boot: int = 50, family: str = "mirt"):
    return experiment().model_copy(
        update={"evaluation": Evaluation(n_boot=n_boot, ablation_family=family)}
    )


# ------------------------------------------------------------------------------------------------
# Table 2
# ------------------------------------------------------------------------------------------------
def test_ablation_table_layout_and_hand_average():
    # Supervisions given out of order and datasets unsorted: the table fixes both orders.
    frame = _ablation_rows(
        {
            ("zeta", "full_dars"): (0.4, 0.6),
            ("alpha", "full_dars"): (0.2, 0.2),
            ("zeta", "single_shot"): (0.1, 0.3),
            ("alpha", "single_shot"): (0.5, 0.7),
        }
    )
    table = ablation_table(frame)
    assert table.columns == [
        "supervision",
        "alpha_rew",
        "alpha_dec",
        "zeta_rew",
        "zeta_dec",
        "average",
    ]
    assert table["supervision"].to_list() == ["single_shot", "full_dars"]
    assert table.row(0) == pytest.approx(("single_shot", 0.5, 0.7, 0.1, 0.3, 0.4))
    assert table.row(1) == pytest.approx(("full_dars", 0.2, 0.2, 0.4, 0.6, 0.35))


def test_ablation_table_average_is_null_when_a_cell_is_missing():
    frame = _ablation_rows({("d", "input_only"): (0.2, 0.4), ("e", "input_only"): (0.6, 0.8)})
    frame = frame.filter(~((pl.col("dataset") == "e") & (pl.col("view") == "test_decode")))
    table = ablation_table(frame)
    assert table["e_dec"].to_list() == [None]
    assert table["average"].to_list() == [None]


def test_ablation_table_rejects_bad_frames():
    frame = _ablation_rows({("d", "input_only"): (0.2, 0.4)})
    with pytest.raises(ValueError, match="several families"):
        ablation_table(pl.concat([frame, frame.with_columns(family=pl.lit("knn"))]))
    with pytest.raises(ValueError, match="unknown supervision.*'dars'"):
        ablation_table(frame.with_columns(supervision=pl.lit("dars")))
    with pytest.raises(ValueError, match="several rows for dataset='d'"):
        ablation_table(pl.concat([frame, frame]))


# ------------------------------------------------------------------------------------------------
# compute
# ------------------------------------------------------------------------------------------------
def test_compute_hand_example():
    out, extras = SPEC.compute(_inputs(), _exp())["ablation"]
    assert out.columns == [
        "dataset", "view", "family", "supervision",
        "n_draws", "U", "U_std", "U_low", "U_high", "Q", "C",
    ]  # fmt: skip
    assert out.schema == pl.Schema(SPEC.tables["ablation"])
    assert out["supervision"].to_list() == [v for v in TABLE2_SUPERVISIONS for _ in range(2)]
    assert out["view"].to_list() == ["test_rewrite", "test_decode"] * len(TABLE2_SUPERVISIONS)
    assert set(out["family"]) == {"mirt"}
    got = {(r["supervision"], r["view"]): r for r in out.iter_rows(named=True)}
    # full_dars is not trained here: its row comes from the dars routes.
    expect_routes = {v: TRAINED.get(v, TRAINED["dars"])[0] for v in TABLE2_SUPERVISIONS}
    for supervision in TABLE2_SUPERVISIONS[1:]:
        u_rew, u_dec = U[expect_routes[supervision]]
        assert got[(supervision, "test_rewrite")]["U"] == pytest.approx(u_rew)
        assert got[(supervision, "test_decode")]["U"] == pytest.approx(u_dec)
        for view in ("test_rewrite", "test_decode"):
            r = got[(supervision, view)]
            assert r["n_draws"] == 1 and r["U_std"] is None
            assert r["U_low"] <= r["U"] <= r["U_high"]
    # single shot: draws (a, b) and (a, a) → mean and sample std over the two draws.
    ss = got[("single_shot", "test_rewrite")]
    assert ss["n_draws"] == 2 and ss["U_low"] is None
    assert ss["U"] == pytest.approx((0.975 + 0.5) / 2)
    assert ss["U_std"] == pytest.approx(abs(0.975 - 0.5) / math.sqrt(2))
    assert got[("single_shot", "test_decode")]["U"] == pytest.approx((0.475 + 0.25) / 2)
    assert extras["family"] == "mirt" and extras["n_boot"] == 50
    assert extras["trained_supervisions"][f"{DS}/full_dars"] == "dars"
    assert extras["trained_supervisions"][f"{DS}/input_only"] == "input_only"

    table = ablation_table(out)
    assert table.filter(supervision="output_only").row(0) == pytest.approx(
        ("output_only", 0.45, 0.7, (0.45 + 0.7) / 2)
    )
    [view] = SPEC.view({"ablation": out})
    assert view.title == "ablation (U)" and view.frame.equals(table)


def test_compute_uses_full_dars_routes_when_trained():
    out, extras = SPEC.compute(_inputs({**TRAINED, "full_dars": [("b", "b")]}), _exp(20))[
        "ablation"
    ]
    assert out.filter(supervision="full_dars")["U"].to_list() == pytest.approx(list(U[("b", "b")]))
    assert extras["trained_supervisions"][f"{DS}/full_dars"] == "full_dars"


def test_compute_names_missing_routes_and_the_train_command():
    trained = {m: d for m, d in TRAINED.items() if m not in ("output_only", "dars")}
    with pytest.raises(MissingInputError) as err:
        SPEC.compute(_inputs(trained), _exp())
    msg = str(err.value)
    assert "ablation of router family 'mirt' needs routes that are not trained" in msg
    assert "`dars train --family mirt --supervision output_only --supervision dars`" in msg
    assert err.value.where == (
        (ROUTES, (DS, "mirt", "output_only")),
        (ROUTES, (DS, "mirt", "dars")),
    )


def test_unknown_family_is_rejected_before_reading():
    with pytest.raises(ValueError, match="unknown router famil"):
        SPEC.check(_exp(family="nope"))
    with pytest.raises(ValueError, match="unknown router famil"):
        SPEC.compute(_inputs(), _exp(family="nope"))


def _averages(avg: dict[str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"supervision": list(avg), "average": list(avg.values())},
        schema={"supervision": pl.String, "average": pl.Float64},
    )


def test_ordering_note_names_the_variants_above_full_dars() -> None:
    from dars.evaluation.experiments.ablation import ordering_note

    # The paper's order (full_dars first) gives no note.
    paper_order = {"single_shot": 0.1, "without_risk": 0.2, "full_dars": 0.3}
    assert ordering_note(_averages(paper_order)) is None
    note = ordering_note(_averages({"single_shot": 0.1, "input_only": 0.35, "full_dars": 0.3}))
    assert note is not None
    assert "here input_only > full_dars > single_shot" in note
    assert "Full DARS ranks 2 of 3 here, below input_only (+0.050)" in note
