"""The router bench script runs in quick mode and reports what it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from dars.routers import available_routers, get_router_class

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_routers.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_routers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_quick_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench" / "routers.json"
    result = _load_bench().main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "total: sequential" in printed
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    rows = {r["family"]: r for r in saved["rows"]}
    assert set(rows) == set(available_routers())
    for family, row in rows.items():
        assert row["draws"] == 3 and row["sequential_s"] > 0 and row["batched_s"] > 0
        if get_router_class(family).tags.batched_fit_exact:
            assert row["max_route_disagreement"] == 0.0, family
