"""The report as a small document model, and what an experiment's report section is given.

A :class:`Document` is a title and a list of blocks — :class:`Heading`, :class:`Text`,
:class:`Note`, :class:`Code`, :class:`Table` (cells are display strings) and :class:`Figure`
(PNG bytes) — that :mod:`dars.evaluation.report` renders as Markdown and as HTML. Each
experiment's ``section`` adds its blocks to the document; it receives a :class:`ReportRun`
(every result table, the run context, the datasets in report order, the paper's counterpart of
each dataset) and uses the cell formatters here, so every table of the report prints numbers
the same way. Nothing here reads or writes files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from dars.evaluation.metrics import VIEW_SHORT, order_families
from dars.evaluation.plots import png_bytes

__all__ = [
    "DASH",
    "Block",
    "Code",
    "Document",
    "Figure",
    "Heading",
    "Note",
    "ReportRun",
    "Table",
    "Text",
    "by_family_table",
    "ci",
    "ci_width_text",
    "fmt",
    "pm",
    "text_table",
]

#: What an empty or missing cell shows.
DASH = "—"


# ------------------------------------------------------------------------------------------------
# blocks
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    """A heading of ``level`` 2–4 (level 1 is the document title)."""

    level: int
    text: str


@dataclass(frozen=True)
class Text:
    """A paragraph; a Markdown subset: `code`, **bold**, *italic*."""

    text: str


@dataclass(frozen=True)
class Note:
    """A highlighted remark (a missing result, settings that differ)."""

    text: str


@dataclass(frozen=True)
class Code:
    """A code block (the configuration as YAML); with a ``summary`` it is collapsed under that
    line (``<details>`` in HTML and Markdown)."""

    text: str
    lang: str = ""
    summary: str = ""


@dataclass(frozen=True)
class Table:
    """A table: one row per frame row, every cell a display string; ``caption`` below it."""

    frame: pl.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """A figure: ``name`` is its file stem under ``report/``, ``png`` its bytes."""

    name: str
    png: bytes
    caption: str


Block = Heading | Text | Note | Code | Table | Figure


@dataclass
class Document:
    """A laid-out report: a title and blocks in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(Heading(level, text))

    def p(self, text: str) -> None:
        self.blocks.append(Text(text))

    def note(self, text: str) -> None:
        self.blocks.append(Note(text))

    def code(self, text: str, lang: str = "", summary: str = "") -> None:
        self.blocks.append(Code(text, lang, summary))

    def table(self, frame: pl.DataFrame, caption: str = "") -> None:
        """Add a table of display strings; a missing value (null) shows as a dash (a view a
        dataset does not have, e.g. imported decode-only data has no rewrite view)."""
        self.blocks.append(
            Table(frame.with_columns(pl.all().cast(pl.String).fill_null(DASH)), caption)
        )

    def figure(self, name: str, fig: Any, caption: str) -> None:
        """Add matplotlib figure ``fig`` as PNG file ``<name>.png``."""
        self.blocks.append(Figure(name, png_bytes(fig), caption))

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]

    @property
    def headings(self) -> list[str]:
        return [b.text for b in self.blocks if isinstance(b, Heading)]


# ------------------------------------------------------------------------------------------------
# what a section gets
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportRun:
    """Everything a report section may show.

    ``results``: every result table of every registered experiment, None when it was not
    written; ``contexts``: the run context stored with each
    written result (None when it has none); ``context``: the context of ``main`` (or of the
    first result that has one), None for results written by an older version; ``datasets``:
    the benchmarks in config order; ``paper``: our dataset → the paper's dataset of the same
    task type (None when there is none); ``producers``: table → the experiment that writes it.
    """

    results: Mapping[str, pl.DataFrame | None]
    contexts: Mapping[str, Mapping[str, Any] | None]
    context: Mapping[str, Any] | None
    datasets: tuple[str, ...]
    paper: Mapping[str, str | None]
    producers: Mapping[str, str]

    @property
    def main(self) -> pl.DataFrame:
        """The ``main`` result; ValueError when it is missing (sections that may meet a
        missing ``main`` ask :meth:`result` instead, which adds a note)."""
        main = self.results.get("main")
        if main is None:
            raise ValueError("result 'main' is missing; run `dars experiment main`")
        return main

    def result(self, doc: Document, name: str) -> pl.DataFrame | None:
        """Result ``name`` when it can be shown; otherwise None, after adding a note to ``doc``
        that it is missing or empty and the command that writes it."""
        frame = self.results.get(name)
        command = f"dars experiment {self.producers.get(name, name)}"
        if frame is None:
            doc.note(f"Result `{name}` is missing (no `results/{name}.parquet`); run `{command}`.")
            return None
        if frame.height == 0:
            doc.note(f"Result `{name}` has no rows; rerun `{command}`.")
            return None
        return frame

    def present(self, frame: pl.DataFrame) -> list[str]:
        """The datasets of ``frame``: those of the run in config order, then any other one
        sorted."""
        have = set(frame["dataset"].to_list())
        return [d for d in self.datasets if d in have] + sorted(have - set(self.datasets))


# ------------------------------------------------------------------------------------------------
# cells
# ------------------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 3) -> str:
    """One table cell: floats with ``digits`` decimals, integers as they are, None/NaN as "—"."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return DASH if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def pm(mean: Any, std: Any) -> str:
    """ "mean ± std", or the mean alone when there is no std."""
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def ci(low: Any, high: Any, digits: int = 3) -> str:
    """ "[low, high]", or "—" when a bound is missing."""
    if low is None or high is None:
        return DASH
    return f"[{fmt(low, digits)}, {fmt(high, digits)}]"


def text_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> pl.DataFrame:
    """A display table: one row per dict, ``columns`` in order, "—" where a row has no cell."""
    return pl.DataFrame(
        {c: [r.get(c, DASH) for r in rows] for c in columns},
        schema=dict.fromkeys(columns, pl.String),
    )


def by_family_table(
    frame: pl.DataFrame, dataset: str, key_cols: Sequence[str], label: Callable[[tuple], str]
) -> pl.DataFrame:
    """A sweep's numbers for one dataset: one row per (router family, view), families in the
    paper's order, then one column per setting (the distinct values of ``key_cols``, sorted,
    headed ``label(values)``), cells the test utility U ("—" where a setting has no row)."""
    sub = frame.filter(pl.col("dataset") == dataset)
    keys = sub.select(*key_cols).unique().sort(*key_cols).rows()
    cell = {
        (r["family"], r["view"], tuple(r[k] for k in key_cols)): r["U"]
        for r in sub.iter_rows(named=True)
    }
    families = order_families(sub["family"].to_list())
    views = [v for v in VIEW_SHORT if v in set(sub["view"].to_list())]
    rows = []
    for fam in families:
        for view in views:
            row = {"family": fam, "view": VIEW_SHORT[view]}
            for k in keys:
                if (fam, view, k) in cell:
                    row[label(k)] = fmt(cell[(fam, view, k)])
            rows.append(row)
    return text_table(rows, ["family", "view", *[label(k) for k in keys]])


def ci_width_text(frame: pl.DataFrame) -> str:
    """How wide the bootstrap CIs of a sweep are (the figures leave them out): median, min and
    max half-width of ``U_low``..``U_high`` over the frame's rows."""
    half = ((frame["U_high"] - frame["U_low"]) / 2).drop_nulls().drop_nans()
    if half.len() == 0:
        return "no confidence intervals recorded."
    return (
        f"median half-width of the 95% CIs over test queries {half.median():.3f} "
        f"(range {half.min():.3f}–{half.max():.3f}; per point in `results/`)."
    )
