"""Print the reliability figures: ``python -m tests.reliability.summary [--quick] [--json FILE]
[--only money,integrity]``.

Runs ``measure`` of every topic module of this package (see :mod:`tests.reliability.figures`)
in a temporary directory and prints one table (topic, check, value, target, ok); exits 1 if a
figure missed its target.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

import tests.reliability as pkg
from tests.reliability.figures import Figure, failed


# Scripts in this directory (money_helper.py) run with it first on sys.path: a module named like
# a standard-library one (a `secrets.py` did) would shadow it in them. This guard keeps it so.
def _check_no_stdlib_shadowing() -> None:
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in sys.stdlib_module_names:
            raise RuntimeError(
                f"tests/reliability/{info.name}.py shadows the standard library's {info.name!r}"
            )


def topic_modules() -> list[str]:
    """Modules of this package that define ``measure`` (not the tests, not this file)."""
    _check_no_stdlib_shadowing()
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("test_") or info.name in ("figures", "summary", "conftest"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        if hasattr(mod, "measure"):
            names.append(mod.__name__)
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the smaller scenarios the tests run")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--only", help="comma-separated topic modules to run (default: all)")
    args = ap.parse_args(argv)
    names = topic_modules()
    if args.only:
        wanted = {f"{pkg.__name__}.{t.strip()}" for t in args.only.split(",")}
        unknown = sorted(wanted - set(names))
        if unknown:
            unknown = [u.rsplit(".", 1)[1] for u in unknown]
            ap.error(f"unknown topic(s) {unknown}; topics: {[n.rsplit('.', 1)[1] for n in names]}")
        names = [n for n in names if n in wanted]
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    for name in names:
        mod = importlib.import_module(name)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="dars-reliability-") as tmp:
            figures += mod.measure(Path(tmp), quick=args.quick)
        timings[name.rsplit(".", 1)[1]] = time.monotonic() - t0
    table = Table(title="dars reliability figures (loopback only)")
    for col in ("topic", "check", "value", "target", "ok"):
        table.add_column(col)
    for f in figures:
        table.add_row(f.topic, f.check, f.value, f.target, "yes" if f.ok else "NO")
    console = Console(width=140)
    console.print(table)
    console.print("wall s per module: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=2))
    return 1 if failed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
