"""Local cache locations.

Only the benchmark cache lives here for now: hub downloads are stored as Parquet files under
``benchmark_cache_dir()`` so later runs (and offline machines) read them without the network.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DARS_CACHE_DIR"


def cache_root() -> Path:
    """The dars cache root: ``$DARS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/dars``, else
    ``~/.cache/dars``. Not created here."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dars"


def benchmark_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Directory holding cached benchmark files (default ``~/.cache/dars/benchmarks``).

    ``cache_dir`` (an explicit argument, e.g. from a loader call) wins over the environment.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return cache_root() / "benchmarks"


def benchmark_cache_file(name: str, cache_dir: str | Path | None = None) -> Path:
    """The Parquet file caching benchmark ``name``'s raw source rows (its hub schema)."""
    return benchmark_cache_dir(cache_dir) / f"{name}.parquet"
