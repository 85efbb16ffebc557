"""Whether the outputs after collection are as new as the store they come from.

The deployment chain (``deploy/prefect.yaml``) starts supervise → train → evaluate → report when
a collect run completes; :func:`outputs_behind_store` lets a collect that wrote nothing tell
whether that chain still has work: it has when a stage after collect never finished on the
current store (the supervision is missing or older than the newest store file, or the report is
missing or older than the supervision — a supervise, train, evaluate or report run failed or
never ran since). File modification times are the clock; a store written and supervised within
the same timestamp counts as behind, so the rule errs on running the chain again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dars.storage.layout import RunLayout


def _mtimes(paths: Iterable[Path]) -> list[int]:
    return [p.stat().st_mtime_ns for p in paths if p.is_file()]


def outputs_behind_store(root: str | Path) -> str | None:
    """Why the supervision or report of run ``root`` is not up to date with its observation and
    rewrite stores (one sentence), or None when both are: every supervision file is newer than
    every store file and both report files (``index.md``, ``index.html``) are newer than every
    supervision file."""
    lay = RunLayout(root)
    store = _mtimes(
        [*lay.observations_dir().rglob("*.parquet"), *lay.rewrites_dir().rglob("*.parquet")]
    )
    supervision = _mtimes(lay.supervision_dir().rglob("*.parquet"))
    report = _mtimes([lay.report_file("index", "md"), lay.report_file("index", "html")])
    if not supervision:
        return f"{lay.supervision_dir()} has no supervision yet"
    if store and min(supervision) <= max(store):
        return f"the supervision under {lay.supervision_dir()} is older than the store"
    if len(report) < 2:
        return f"{lay.report_dir()} has no report yet"
    if min(report) <= max(supervision):
        return f"the report under {lay.report_dir()} is older than the supervision"
    return None


__all__ = ["outputs_behind_store"]
