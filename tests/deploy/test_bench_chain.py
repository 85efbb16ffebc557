"""bench/bench_trigger_chain.py in its quick mode, on the session's running SQLite stack
(``--api-url``): one collect → report chain timed through the Prefect API, a table printed and
the JSON written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.deploy

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_trigger_chain.py"


def test_bench_times_one_chain_on_a_running_stack(sqlite_stack, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_trigger_chain", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "chain.json"

    rows = bench.main(["--quick", "--api-url", sqlite_stack.server.api_url, "--out", str(out)])

    (row,) = rows
    assert row["backend"] == "given" and row["reps"] == 1
    (timing,) = row["timings"]
    # The report is written after the last hop started, which is after collect ended.
    assert timing["collect_end_to_report_file_s"] >= timing["evaluate_to_report_start_s"] > 0
    assert row["hop_gap_s_mean"] > 0
    assert json.loads(out.read_text())[0]["collect_end_to_report_s_median"] == pytest.approx(
        timing["collect_end_to_report_file_s"]
    )
    printed = capsys.readouterr().out
    assert "collect→report s" in printed and "given" in printed
