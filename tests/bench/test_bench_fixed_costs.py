"""bench/bench_fixed_costs.py in its quick mode: a no-op ``dars collect`` with the pre-check
against the flow path of before, and the encoder with every text cached against one uncached."""

from __future__ import annotations

import json

from tests.bench.conftest import load_bench


def test_bench_fixed_costs_quick(tmp_path, capsys) -> None:
    out = tmp_path / "fixed.json"
    rows = {
        r["row"]: r for r in load_bench("bench_fixed_costs").main(["--quick", "--out", str(out)])
    }
    assert "collect no-op: pre-check" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["rows"]) == len(rows) == 5
    pre, flow = (
        rows["collect no-op: pre-check"],
        rows["collect no-op: --run-flow, temporary server"],
    )
    assert pre["note"].startswith("nothing to collect on")  # the pre-check line
    assert flow["note"].startswith("nothing to collect: every planned call")  # the budget line
    # Without Prefect's server and imports the no-op costs a fraction of the flow path's CPU.
    assert pre["cpu_s"] < flow["cpu_s"] / 2
    cold = rows["encoder: 64 uncached, cold process"]
    cached, uncached = rows["encoder: all cached"], rows["encoder: one uncached"]
    assert cold["note"] == "model loaded: True, 64 text(s) encoded"
    assert cached["note"] == "model loaded: False, 0 text(s) encoded"
    assert uncached["note"] == "model loaded: True, 1 text(s) encoded"
