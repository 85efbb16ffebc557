"""bench/bench_supervise.py --quick: every run is measured in its own process and the table's
rows and ratios are written to --out."""

from __future__ import annotations

import json

from tests.bench.conftest import load_bench


def test_quick_bench_measures_the_stage_the_aggregate_and_duckdb(tmp_path, capsys):
    bench = load_bench("bench_supervise")
    out = tmp_path / "sup.json"
    result = bench.main(["--quick", "--out", str(out), "--n-boot", "100"])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == result
    rows = {r["run"]: r for r in result["rows"]}
    assert list(rows) == ["stage", "dars aggregate", "duckdb group-by"]
    for r in rows.values():
        assert r["n_rows"] == result["rows"][0]["n_rows"] > 150_000
        assert r["cpu_s"] >= r["work_cpu_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["x_duckdb_cpu"] > 0 and r["run"] in printed
    assert rows["duckdb group-by"]["x_duckdb_cpu"] == 1.0 and rows["stage"]["x_stage_cpu"] == 1.0
    assert "load average" in printed
