"""``docs/demo_numbers.md``: the README's headline figures, generated from a run's results.

:func:`write_headline` reads the result tables :func:`dars.evaluation.headline.headline_numbers`
uses (through :mod:`dars.storage.results`), renders them with the run facts given (wall time,
machine, load) and writes the Markdown file. No flow: it reads six small tables.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
from collections.abc import Mapping
from pathlib import Path

from dars.evaluation.headline import HEADLINE_RESULTS, headline_numbers, render_headline
from dars.storage import RunLayout, atomic_write_text
from dars.storage.results import read_result, result_exists

__all__ = ["headline_text", "record_timing", "recorded_facts", "write_headline"]


def headline_text(root: str | Path, facts: Mapping[str, str] | None = None) -> str:
    """The Markdown of the headline figures of the run under ``root``; results not written
    yet are left out. Raises :class:`~dars.storage.results.ResultMissingError` when none of
    them exists."""
    results = {
        name: read_result(root, name) for name in HEADLINE_RESULTS if result_exists(root, name)
    }
    if not results:
        read_result(root, "main")  # raises, naming the file and the command that writes it
    return render_headline(headline_numbers(results), facts)


def write_headline(
    root: str | Path, out: str | Path, facts: Mapping[str, str] | None = None
) -> Path:
    """Write :func:`headline_text` for the run under ``root`` to ``out``; returns ``out``."""
    path = Path(out)
    atomic_write_text(headline_text(root, facts), path)
    return path


def record_timing(root: str | Path, wall_s: float, load_before: float) -> Path:
    """Write ``timing.json`` under ``root`` for a whole-pipeline run that took ``wall_s``
    seconds: the date, wall and CPU seconds (this process and its children), peak memory, the
    machine's cores and architecture and the 1-minute load average before and after."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    timing = {
        "finished_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(wall_s, 1),
        "cpu_s": round(own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, 1),
        "peak_rss_mb": round(max(own.ru_maxrss, kids.ru_maxrss) / 1024),  # Linux: KiB
        "cores": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()}",
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    path = RunLayout(root).timing_file()
    atomic_write_text(json.dumps(timing, indent=1) + "\n", path)
    return path


def recorded_facts(root: str | Path) -> dict[str, str]:
    """The run facts of ``timing.json`` under ``root`` as label → text (empty when the run
    recorded none)."""
    path = RunLayout(root).timing_file()
    if not path.is_file():
        return {}
    t = json.loads(path.read_text(encoding="utf-8"))
    minutes, seconds = divmod(round(t["wall_s"]), 60)
    return {
        "`dars run` wall time": f"{minutes} min {seconds} s ({t['cpu_s']:.0f} CPU-s, "
        f"peak memory {t['peak_rss_mb']} MB), finished {t['finished_utc']}",
        "machine": f"{t['cores']} cores, {t['machine']}",
        "load average (1 min)": f"{t['load_before']} before, {t['load_after']} after",
    }
