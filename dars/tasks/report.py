"""The report stage: ``report/index.{md,html}`` and the figures from ``results/``.

:func:`write_report` reads every result table the registered experiments declare, with the run
context stored beside it, lays the report out and renders it (:mod:`dars.evaluation.report`,
pure) and writes the Markdown, the self-contained HTML and the PNG figures through
:class:`~dars.storage.RunLayout`.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.evaluation.experiments.base import table_producers
from dars.evaluation.report import build_report, render_html, render_markdown
from dars.storage import RunLayout, atomic_write_bytes, atomic_write_text
from dars.storage.results import ResultMissingError, read_context, read_result, result_exists
from dars.tasks.retry import retry_on_transient_io

__all__ = ["report_files", "report_task", "write_report"]


def _context(root: str, name: str) -> dict[str, Any] | None:
    try:
        return read_context(root, name)
    except (ResultMissingError, KeyError):
        return None  # not written yet, or written before results carried their context


def write_report(exp: Experiment) -> Path:
    """Write ``report/index.md``, ``report/index.html`` and the figures (``report/*.png``)
    for the run under ``exp.root`` from its ``results/`` tables; returns the path of index.md.

    Raises :class:`~dars.storage.results.ResultMissingError` when no result table exists
    (nothing to report); a missing result, ``main`` included, becomes a note naming the command
    that writes it. Figures of an earlier report that this one no longer draws are removed.
    """
    root = exp.root
    layout = RunLayout(root)
    producers = table_producers()
    results = {
        name: read_result(root, name) if result_exists(root, name) else None for name in producers
    }
    if all(frame is None for frame in results.values()):
        # Raises ResultMissingError naming the file and the command.
        read_result(root, "main", producer=producers.get("main"))
    contexts = {name: _context(root, name) for name, frame in results.items() if frame is not None}
    written_at = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = build_report(results, contexts, root=str(root), written_at=written_at)
    keep = set()
    for fig in doc.figures:
        path = layout.report_file(fig.name, "png")
        atomic_write_bytes(fig.png, path)
        keep.add(path)
    for stale in layout.report_files("png"):
        if stale not in keep:
            stale.unlink(missing_ok=True)
    atomic_write_text(render_html(doc), layout.report_file("index", "html"))
    md = layout.report_file("index", "md")
    atomic_write_text(render_markdown(doc), md)
    return md


def report_files(exp: Experiment) -> tuple[Path, Path]:
    """(``report/index.html``, ``report/index.md``) of the run under ``exp.root``."""
    layout = RunLayout(exp.root)
    return layout.report_file("index", "html"), layout.report_file("index", "md")


@task(
    name="report",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    cache_policy=NO_CACHE,
)
def report_task(exp: Experiment) -> Path:
    """Write the Markdown/HTML report from ``exp.root``'s results; returns ``report/index.md``."""
    return write_report(exp)
