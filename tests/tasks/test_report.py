"""The report stage (dars.tasks.report): result files → report/index.md, index.html, PNGs.

The layout and the renderers are tested on frames in tests/evaluation/test_report.py; here the
synthetic results (tests/evaluation/sample_results.py) are written to a run directory first.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import polars as pl
import pytest
from matplotlib.image import imread

from dars.config import Experiment, load_experiment
from dars.evaluation.report import section_titles
from dars.storage import RunLayout
from dars.storage.results import ResultMissingError, run_context, write_result
from dars.tasks.report import write_report
from tests.evaluation.sample_results import EXPECTED_FIGURES, make_results

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _exp(root: Path) -> Experiment:
    return load_experiment(CONFIG, root=str(root))


def _write(root: Path, tables: dict[str, pl.DataFrame]) -> Experiment:
    exp = _exp(root)
    for name, frame in tables.items():
        write_result(root, name, frame, run_context(exp))
    return exp


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("run")
    exp = _write(root, make_results())
    md_path = write_report(exp)
    assert md_path == RunLayout(root).report_file("index", "md")
    return root, md_path.read_text(encoding="utf-8")


def test_report_files_and_sections(full) -> None:
    root, md = full
    html = RunLayout(root).report_file("index", "html").read_text(encoding="utf-8")
    for title in section_titles():
        assert f"\n## {title}\n" in md
        assert f">{title}</h2>" in html
    assert f"from the result tables in `{root}/results`" in md


def test_every_figure_is_a_valid_png_referenced_by_the_markdown(full) -> None:
    root, md = full
    layout = RunLayout(root)
    pngs = {p.stem for p in layout.report_dir().glob("*.png")}
    assert pngs == EXPECTED_FIGURES
    for name in EXPECTED_FIGURES:
        data = layout.report_file(name, "png").read_bytes()
        assert data.startswith(PNG_MAGIC)
        image = imread(io.BytesIO(data), format="png")
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert f"]({name}.png)" in md


def test_html_file_is_self_contained(full) -> None:
    root, _ = full
    html = RunLayout(root).report_file("index", "html").read_text(encoding="utf-8")
    srcs = re.findall(r'\bsrc="([^"]*)"', html)
    assert len(srcs) == len(EXPECTED_FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "<script" not in html and "url(" not in html


def test_report_is_rewritten_identically(tmp_path: Path) -> None:
    tables = make_results()
    exp = _write(tmp_path, {n: tables[n] for n in ("main", "diagnostics", "beta")})
    layout = RunLayout(tmp_path)
    md = write_report(exp).read_text(encoding="utf-8")
    pngs = {p.name: p.read_bytes() for p in layout.report_dir().glob("*.png")}
    assert set(pngs) == {"fig2a_instability.png", "fig2b_variance.png", "fig4c_beta.png"}
    again = write_report(exp).read_text(encoding="utf-8")
    assert {p.name: p.read_bytes() for p in layout.report_dir().glob("*.png")} == pngs
    strip = re.compile(r"Report written [^\n]* from")
    assert strip.sub("", again) == strip.sub("", md)


def test_stale_figures_are_removed_and_missing_results_named(tmp_path: Path) -> None:
    tables = make_results()
    exp = _write(tmp_path, {"main": tables["main"], "beta": tables["beta"]})
    layout = RunLayout(tmp_path)
    stale = layout.report_file("fig2a_instability", "png")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_MAGIC)
    md = write_report(exp).read_text(encoding="utf-8")
    assert "Result `ablation` is missing" in md and "`dars experiment ablation`" in md
    assert {p.stem for p in layout.report_dir().glob("*.png")} == {"fig4c_beta"}
    html = layout.report_file("index", "html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 1


def test_missing_main_is_a_note_naming_the_command(tmp_path: Path) -> None:
    # Issue 15: `dars report` with results/main missing aborted; other missing results are notes.
    exp = _write(tmp_path, {"beta": make_results()["beta"]})
    md = write_report(exp).read_text(encoding="utf-8")
    assert "Result `main` is missing" in md and "`dars experiment main`" in md
    assert {p.stem for p in RunLayout(tmp_path).report_dir().glob("*.png")} == {"fig4c_beta"}


def test_missing_main_is_a_note(tmp_path: Path) -> None:
    exp = _write(tmp_path, {"beta": make_results()["beta"]})
    md = write_report(exp).read_text(encoding="utf-8")
    assert "Result `main` is missing" in md and "`dars experiment main`" in md


def test_no_result_at_all_raises_naming_main_and_command(tmp_path: Path) -> None:
    exp = _write(tmp_path, {})
    with pytest.raises(
        ResultMissingError,
        match=r"'main' not found at .*main\.parquet.*"
        r"`dars experiment main`",
    ):
        write_report(exp)
    assert not RunLayout(tmp_path).report_file("index", "md").exists()


def test_main_without_context_from_an_older_version(tmp_path: Path) -> None:
    exp = _write(tmp_path, {"main": make_results()["main"]})
    path = RunLayout(tmp_path).results_file("main", "json")
    payload = json.loads(path.read_text())
    del payload["context"]
    path.write_text(json.dumps(payload))
    md = write_report(exp).read_text(encoding="utf-8")
    assert "run context (pool, protocol, λ, β) was not recorded" in md
    assert "| demo_mc | — | — | gpqa |" in md


def test_results_written_with_other_settings_are_flagged(tmp_path: Path) -> None:
    tables = make_results()
    exp = _exp(tmp_path)
    write_result(tmp_path, "main", tables["main"], run_context(exp))
    write_result(tmp_path, "beta", tables["beta"], run_context(exp.model_copy(update={"lam": 0.1})))
    md = write_report(exp).read_text(encoding="utf-8")
    assert "Result `beta` was written with settings that differ from `main` (lam)" in md
