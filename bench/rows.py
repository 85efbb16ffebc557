"""What every bench's ``--out`` file holds besides its rows: the machine and its load."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Platform, CPU count and the 1/5/15-minute load averages now."""
    return {"machine": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()}


def write_rows(out: Path | None, rows: list[dict[str, Any]]) -> None:
    """Write ``{"meta": machine(), "rows": rows}`` as JSON to ``out`` (nothing when None)."""
    if out is not None:
        out.write_text(json.dumps({"meta": machine(), "rows": rows}, indent=2))
