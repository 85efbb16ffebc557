"""The README's headline figures (dars.evaluation.headline) from small hand-made result frames,
and the committed docs/demo_numbers.md against the generator."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dars.evaluation.headline import HEADLINE_RESULTS, headline_numbers, render_headline

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "demo_numbers.md"
DEMO_ROOT = REPO / "runs" / "demo"


def _main() -> pl.DataFrame:
    # Two (dataset, view) pairs, two families: DARS wins 3 of 4 cells.
    rows = []
    for ds, best in (("a", 0.70), ("b", 0.90)):
        rows.append((ds, "v", "best_fixed", "best_fixed", best))
        rows.append((ds, "v", "oracle", "oracle", 0.99))
        rows.append((ds, "v", "random", "random", 0.10))
    rows += [
        ("a", "v", "knn", "dars", 0.80),  # +0.10, >= best fixed
        ("a", "v", "knn", "single_shot", 0.70),  # == best fixed
        ("a", "v", "mlp", "dars", 0.60),  # -0.05
        ("a", "v", "mlp", "single_shot", 0.65),
        ("a", "v", "mlp", "output_only", 0.99),  # an ablation: ignored
        ("b", "v", "knn", "dars", 0.85),  # +0.05
        ("b", "v", "knn", "single_shot", 0.80),
        ("b", "v", "mlp", "dars", 0.90),  # +0.02, == best fixed
        ("b", "v", "mlp", "single_shot", 0.88),
    ]
    return pl.DataFrame(
        rows, schema=["dataset", "view", "family", "supervision", "U"], orient="row"
    )


def _pareto_budget() -> pl.DataFrame:
    rows = [
        ("a", "v", "knn", "dars", 0.1, 0.9),
        ("a", "v", "knn", "single_shot", 0.1, 0.8),
        ("a", "v", "knn", "dars", 0.2, 0.9),
        ("a", "v", "knn", "single_shot", 0.2, 0.9),  # a tie is no win
        ("a", "v", "mlp", "dars", 0.1, 0.5),
        ("a", "v", "mlp", "single_shot", 0.1, 0.6),
    ]
    return pl.DataFrame(
        rows, schema=["dataset", "view", "family", "supervision", "budget", "Q"], orient="row"
    )


def _sample_efficiency() -> pl.DataFrame:
    rows = [
        ("a", "v", "knn", 1, 1, 0.5),
        ("b", "v", "knn", 1, 1, 0.7),
        ("a", "v", "knn", 5, 5, 0.9),
    ]
    return pl.DataFrame(rows, schema=["dataset", "view", "family", "k", "m", "U"], orient="row")


def _beta() -> pl.DataFrame:
    rows = [
        ("a", "v", "knn", 0.0, 0.50),
        ("a", "v", "knn", 1.0, 0.60),  # this curve moves by 0.10
        ("b", "v", "knn", 0.0, 0.70),
        ("b", "v", "knn", 1.0, 0.66),
    ]
    return pl.DataFrame(rows, schema=["dataset", "view", "family", "beta", "U"], orient="row")


def _diagnostics() -> pl.DataFrame:
    rows = [
        ("a", "winner_flip_rate", "paper", True, 0.9),
        ("a", "winner_flip_rate", "draws", False, 0.1),
        ("a", "outcome_instability", None, True, 0.7),
    ]
    return pl.DataFrame(
        rows, schema=["dataset", "metric", "definition", "is_default", "value"], orient="row"
    )


def _recovery() -> pl.DataFrame:
    rows = [("a", "single_shot", 0.25), ("a", "full_dars", 0.6), ("a", "dars_k1_m1", 0.2)]
    return pl.DataFrame(rows, schema=["dataset", "supervision", "recovery"], orient="row")


def _results() -> dict[str, pl.DataFrame]:
    return {
        "main": _main(),
        "pareto_budget": _pareto_budget(),
        "sample_efficiency": _sample_efficiency(),
        "beta": _beta(),
        "diagnostics": _diagnostics(),
        "recovery": _recovery(),
    }


def test_numbers_from_a_small_fixture() -> None:
    n = headline_numbers(_results())
    m = n["main"]
    assert (m["cells"], m["dars_wins"]) == (4, 3)
    assert m["mean_gain"] == pytest.approx((0.10 - 0.05 + 0.05 + 0.02) / 4)
    assert m["per_dataset"] == {"a": (1, 2), "b": (2, 2)}
    assert (m["dars_ge_best_fixed"], m["single_ge_best_fixed"]) == (2, 1)
    p = n["pareto_budget"]
    assert (p["dars_wins"], p["cells"]) == (1, 3)
    assert p["per_family"] == {"knn": (1, 2), "mlp": (0, 1)}
    assert n["sample_efficiency"] == pytest.approx({"1x1": 0.6, "5x5": 0.9})
    b = n["beta"]
    assert (b["grand_min"], b["grand_max"]) == pytest.approx((0.60, 0.63))
    assert b["max_single_range"] == pytest.approx(0.10)
    assert n["diagnostics"] == {"a": {"winner_flip_rate": 0.9, "outcome_instability": 0.7}}
    assert n["recovery"] == {"a": {"single_shot": 0.25, "full_dars": 0.6}}


def test_missing_results_are_left_out() -> None:
    n = headline_numbers({"main": _main(), "beta": None})
    assert set(n) == {"main"}
    text = render_headline(n)
    assert "3 of 4" in text and "Cost–quality" not in text and "## Run" not in text


def test_render_states_the_run_facts() -> None:
    text = render_headline(headline_numbers(_results()), {"wall time": "16 min 51 s"})
    assert "+0.030 U on average (a 1/2, b 2/2)" in text
    assert "(knn 1/2, mlp 0/1)" in text
    assert "grand mean U 0.600 – 0.630" in text and "up to 0.100" in text
    assert text.endswith("## Run\n\n- wall time: 16 min 51 s\n")


def _bullet_heads(text: str) -> list[str]:
    return [line.split(":")[0] for line in text.splitlines() if line.startswith("- ")]


def test_committed_file_has_the_generator_format() -> None:
    committed = COMMITTED.read_text(encoding="utf-8")
    generated = render_headline(headline_numbers(_results()))
    assert committed.startswith(generated.split("\n- ")[0])
    heads = _bullet_heads(committed.split("\n## Run")[0])
    assert heads == _bullet_heads(generated)


@pytest.mark.skipif(
    not all((DEMO_ROOT / "results" / f"{n}.parquet").is_file() for n in HEADLINE_RESULTS),
    reason="runs/demo has no results (run `make demo` first)",
)
def test_committed_file_matches_the_demo_run() -> None:
    from dars.tasks.headline import headline_text

    committed = COMMITTED.read_text(encoding="utf-8").split("\n## Run")[0]
    assert headline_text(DEMO_ROOT).split("\n## Run")[0] == committed


def test_recorded_timing_becomes_the_run_facts(tmp_path: Path) -> None:
    from dars.tasks.headline import record_timing, recorded_facts

    assert recorded_facts(tmp_path) == {}
    record_timing(tmp_path, 1011.4, load_before=4.25)
    facts = recorded_facts(tmp_path)
    assert facts["`dars run` wall time"].startswith("16 min 51 s (")
    assert facts["load average (1 min)"].startswith("4.25 before, ")
    text = render_headline({}, facts)
    assert "- machine: " in text and "cores" in text
