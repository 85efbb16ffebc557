"""bench/bench_client.py in its quick mode: every row measured, the table printed, the JSON
written, and the simulated pool's two paths giving the same generations."""

from __future__ import annotations

import json

import pytest


def test_bench_client_quick_prints_the_table_and_writes_json(bench_client, tmp_path, capsys):
    bench = bench_client
    out = tmp_path / "client.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in [*bench.ROWS, "sim via litellm", "sim direct"]:
        assert row in printed, row
    assert "simulated generations identical on both paths: True" in printed

    saved = json.loads(out.read_text())
    assert [r["row"] for r in saved["rows"]] == list(bench.ROWS)
    assert [(r["row"], r["processes"]) for r in saved["processes"]] == [
        (row, 2) for row in bench.PROCESS_ROWS
    ]
    for r in [*saved["rows"], *saved["processes"], *saved["simulated"]]:
        assert r["calls_per_s"] > 0 and r["cpu_ms_per_call"] > 0, r
    assert saved["rows"][0]["row"] == "litellm bare" and saved["rows"][0]["x_calls_per_s"] == 1.0
    assert saved["simulated_identical"] is True
    assert saved["collect_identical"] is True
    assert [r["row"] for r in saved["collect"]] == ["collect direct", "collect via litellm"]
    assert saved["collect"][0]["calls"] == saved["collect"][1]["calls"] > 0
    assert "stored rows identical on both paths: True" in printed
    sim = {r["row"]: r for r in saved["simulated"]}
    assert sim["sim direct"]["demo_40k_cpu_s"] == pytest.approx(
        sim["sim direct"]["cpu_ms_per_call"] * 40
    )
