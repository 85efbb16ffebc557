"""The router bench script runs in quick mode and reports what it promises."""

from __future__ import annotations

import json

from dars.routers import available_routers, get_router_class
from tests.bench.conftest import load_bench


def test_bench_quick_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench" / "routers.json"
    result = load_bench("bench_routers").main(["--quick", "--out", str(out)])
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
