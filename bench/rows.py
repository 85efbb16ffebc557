"""Shared by the bench scripts: a plain-text table, and what every ``--out`` file holds besides
its rows (the machine and its load)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Platform, Python version, CPU count and the 1/5/15-minute load averages now."""
    return {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A plain-text table of ``rows`` under the header ``cols`` (first column left-aligned,
    the others right-aligned; floats to 2 decimals, None as blank)."""

    def fmt(v: Any) -> str:
        return "" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    return "\n".join(
        " ".join(
            x.ljust(w) if i == 0 else x.rjust(w)
            for i, (x, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [cols, *cells]
    )


def write_rows(out: Path | None, rows: list[dict[str, Any]]) -> None:
    """Write ``{"meta": machine(), "rows": rows}`` as JSON to ``out`` (nothing when None)."""
    if out is not None:
        out.write_text(json.dumps({"meta": machine(), "rows": rows}, indent=2))
