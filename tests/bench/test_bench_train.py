"""The training-grid bench script runs in quick mode and reports what it promises."""

from __future__ import annotations

import json

from dars.routers import available_routers
from tests.bench.conftest import load_bench


def test_bench_quick_writes_tables_and_json(tmp_path, capsys):
    out = tmp_path / "bench" / "train.json"
    result = load_bench("bench_train").main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "grid:" in printed and "subset: sequential per-draw path" in printed
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    families = set(available_routers())
    grid = {r["family"]: r for r in saved["grid"]["rows"]}
    assert set(grid) == families
    for row in grid.values():
        # single_shot, dars, five ablations and the sweeps, on the one quick dataset
        assert row["jobs"] == 8 and row["fits"] > 4 + 6
    assert saved["grid"]["wall_s"] > 0 and saved["grid"]["cpu_s"] > 0
    compared = {r["family"]: r for r in saved["compare"]}
    assert set(compared) == families
    assert all(r["sequential_s"] > 0 and r["batched_s"] > 0 for r in compared.values())
    assert saved["ratio"] == saved["sequential_s"] / saved["batched_s"]
