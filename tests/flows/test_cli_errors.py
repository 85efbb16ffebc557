"""How `dars` reports failures a user can act on: one line each, no traceback.

Prefect's temporary server not starting in time (issue 12, item 11) says what to set; a
collection with failed keys (item 14) prints one line per failed shard with its causes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dars.cli import SERVER_TIMEOUT, app, server_timeout_message
from dars.tasks.failures import CollectionIncomplete
from tests.flows.test_cli import _tiny_config

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def _lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip()]


def test_server_timeout_message_says_what_to_set(monkeypatch):
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    msg = server_timeout_message(RuntimeError(f"{SERVER_TIMEOUT}. stdout: lots\nof\nlog"))
    assert msg is not None and "\n" not in msg and "no answer in 600 s" in msg
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in msg and "PREFECT_API_URL" in msg
    exited = RuntimeError(f"{SERVER_TIMEOUT} Ephemeral server process exited with code 3.")
    assert "exited with code 3" in server_timeout_message(exited)
    assert server_timeout_message(RuntimeError("something else")) is None
    assert server_timeout_message(ValueError(SERVER_TIMEOUT)) is None


def test_every_command_reports_the_server_timeout_in_one_line(tmp_path, monkeypatch):
    def no_server(*args, **kwargs):
        raise RuntimeError(f"{SERVER_TIMEOUT}. stdout: INFO: Started server process\n[stderr]")

    monkeypatch.setattr("dars.flows.supervise.supervise_flow", no_server)
    monkeypatch.setattr("dars.flows.collect.collect_flow", no_server)
    config = _tiny_config(tmp_path)
    for argv in (["supervise", "-c", str(config)], ["collect", "-c", str(config)]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 3, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        last = _lines(result.output)[-1]
        assert last.startswith("prefect server: Prefect's temporary server did not start")
        assert "PREFECT_API_URL" in last and "stdout" not in result.output


def test_a_real_server_start_timeout_is_one_line_and_exit_3(tmp_path):
    # Issue 12, item 11, reproduced: a start timeout too short for any machine.
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1",
    )
    config = _tiny_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "from dars.cli import app; app()", "supervise", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "Traceback" not in out
    assert _lines(out) == [_lines(out)[0]] and "no answer in 1 s" in out


def test_failed_shards_are_one_line_each_then_the_status(tmp_path, monkeypatch):
    failures = [
        "demo_mc/train/mid/shard 0: 3 failed, 0 not run (3 × server_error 500); `dars rerun "
        "--failed` fills only those keys",
        "demo_mc/test/cheap-weak/shard 1: 1 failed, 0 not run (1 × auth 401); …",
    ]

    def incomplete(*args, **kwargs):
        raise CollectionIncomplete("collection incomplete: 2 decode shard(s) failed", failures)

    monkeypatch.setattr("dars.flows.collect.collect_flow", incomplete)
    result = runner.invoke(app, ["collect", "-c", str(_tiny_config(tmp_path))])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = _lines(result.output)
    start = next(i for i, ln in enumerate(lines) if ln.startswith("collection incomplete"))
    assert lines[start].startswith("collection incomplete: 2 shard(s) failed")
    assert [ln.strip() for ln in lines[start + 1 : start + 3]] == failures
    assert lines[-1].startswith("total:")  # then the store's status
