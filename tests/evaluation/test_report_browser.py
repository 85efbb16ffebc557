"""The HTML report rendered by a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium) loads ``index.html`` and every figure decodes
(``naturalWidth > 0``) with no console error. Skipped, with the reason, when Chromium, its
driver or selenium is absent (``.ci/run`` installs them)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dars.evaluation.report import build_report, render_html
from tests.evaluation.sample_results import EXPECTED_FIGURES, make_results
from tests.evaluation.test_report import _context

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
DEMO_REPORT = Path(__file__).resolve().parents[2] / "runs" / "demo" / "report" / "index.html"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Chromium or chromedriver not found (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium never tries to download one.
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _load(driver: Any, page: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Open ``page``; its images (src head, natural width, complete) and the console entries
    logged at SEVERE level."""
    driver.get_log("browser")  # drop entries of an earlier page
    driver.get(page.as_uri())
    images = driver.execute_script(
        "return Array.from(document.images).map(i => ({alt: i.alt, src: i.src.slice(0, 30),"
        " complete: i.complete, width: i.naturalWidth}));"
    )
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    return images, errors


def test_report_figures_load_without_console_errors(browser: Any, tmp_path: Path) -> None:
    tables = make_results()
    contexts = dict.fromkeys(tables, _context())
    doc = build_report(tables, contexts, root="runs/demo", written_at="2026-01-02 03:04 UTC")
    page = tmp_path / "index.html"
    page.write_text(render_html(doc), encoding="utf-8")
    images, errors = _load(browser, page)
    assert len(images) == len(doc.figures) >= len(EXPECTED_FIGURES)
    assert [i for i in images if not (i["complete"] and i["width"] > 0)] == []
    assert errors == []


def test_the_browser_check_fails_on_a_broken_figure(browser: Any, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><body><img alt="x" src="data:image/png;base64,AAAA">'
        "<script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    images, errors = _load(browser, page)
    assert images[0]["width"] == 0
    assert any("boom" in e["message"] for e in errors)


@pytest.mark.skipif(not DEMO_REPORT.is_file(), reason="runs/demo has no report (make demo)")
def test_demo_report_figures_load(browser: Any) -> None:
    images, errors = _load(browser, DEMO_REPORT)
    assert images and [i for i in images if i["width"] == 0] == []
    assert errors == []
