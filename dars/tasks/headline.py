"""``docs/demo_numbers.md``: the README's headline figures, generated from a run's results.

:func:`write_headline` reads the result tables :func:`dars.evaluation.headline.headline_numbers`
uses (through :mod:`dars.storage.results`), renders them with the run facts given (wall time,
machine, load) and writes the Markdown file. No flow: it reads six small tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dars.evaluation.headline import HEADLINE_RESULTS, headline_numbers, render_headline
from dars.storage import atomic_write_text
from dars.storage.results import read_result, result_exists

__all__ = ["headline_text", "write_headline"]


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
