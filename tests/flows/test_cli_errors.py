"""How `dars` reports failures a user can act on: one line each, no traceback.

Prefect's temporary server not starting in time (issue 12, item 11) says what to set; a
collection with failed keys (item 14) prints one line per failed shard with its causes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
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
    monkeypatch.setattr("dars.tasks.preflight.supervise_problem", lambda *a: None)
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
    # A result file, so the report's pre-flight passes and the flow (the server) is reached.
    results = tmp_path / "run" / "results"
    results.mkdir(parents=True)
    (results / "beta.parquet").touch()
    proc = subprocess.run(
        [sys.executable, "-c", "from dars.cli import app; app()", "report", "-c", str(config)],
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


# ------------------------------------------------------------------------------------------------
# Issue 15: every mistake a new user makes is one line and a non-zero exit, found before Prefect
# starts (no traceback, no Prefect log line).

DEMO = str(REPO / "configs" / "demo.yaml")
PAPER = str(REPO / "configs" / "paper.yaml")
KEYS = ("OPENAI_API_KEY", "DEEPINFRA_API_KEY", "GEMINI_API_KEY")


def _real_pool_config(tmp_path: Path) -> Path:
    """The tiny config with a pool of real providers (never called here) and their keys."""
    import yaml

    path = _tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    routes = [("big", "deepinfra/x/big", KEYS[1]), ("flash", "gemini/flash", KEYS[2])]
    cfg["pool"] = {
        "models": [
            {
                "name": n,
                "litellm_model": r,
                "api_key_env": k,
                "input_price_per_m": 0.1,
                "output_price_per_m": 0.4,
            }
            for n, r, k in routes
        ]
    }
    cfg["rewriter"] = {
        "name": "gpt-4o",
        "litellm_model": "openai/gpt-4o",
        "api_key_env": KEYS[0],
        "input_price_per_m": 2.5,
        "output_price_per_m": 10.0,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


MISSING_KEYS = "missing API key(s): set DEEPINFRA_API_KEY, GEMINI_API_KEY, OPENAI_API_KEY"
# (argv, exit code, a piece of the one line); {empty} is a root with nothing in it, {real} the
# real-pool config, {cache} an empty benchmark cache.
MISTAKES = [
    (["train", "-c", DEMO, "--root", "{empty}", "--family", "knnn"], 2, "unknown router famil"),
    (["train", "-c", DEMO, "--root", "{empty}", "--supervision", "darz"], 2, "['darz']; valid:"),
    (["evaluate", "-c", DEMO, "--root", "{empty}", "-e", "mian"], 2, "['mian']; available:"),
    (["experiment", "mian", "-c", DEMO], 2, "['mian']; available: ablation"),
    (["supervise", "-c", DEMO, "--root", "{empty}"], 1, "nothing to supervise: no ok train"),
    (["train", "-c", DEMO, "--root", "{empty}"], 1, "nothing to train on: no supervision"),
    (["report", "-c", DEMO, "--root", "{empty}"], 1, "nothing to report: no results under"),
    (["evaluate", "-c", DEMO, "--root", "{empty}"], 1, "nothing to evaluate: no observations"),
    (["experiment", "main", "-c", DEMO, "--root", "{empty}"], 1, "nothing to evaluate: no obs"),
    (["benchmarks", "show", "nonexistent"], 2, "unknown benchmark 'nonexistent'; available:"),
    (["benchmarks", "prepare", "nonexistent"], 2, "unknown benchmark 'nonexistent'"),
    (["train", "-c", DEMO, "--famly", "knn"], 2, "No such option: --famly"),
    (["collect", "-c", PAPER, "--root", "{empty}"], 1, "provide the data in one of these ways"),
    (["collect", "-c", "{real}"], 2, MISSING_KEYS),
    (["run", "-c", "{real}"], 2, MISSING_KEYS),
    (["rerun", "--failed", "-c", "{real}"], 2, MISSING_KEYS),
]


def _no_prefect(monkeypatch) -> None:
    """Starting Prefect (its server, a flow) fails the test with its own message."""

    def started(*args, **kwargs):
        raise AssertionError("Prefect was started")

    monkeypatch.setattr("dars.cli._prefect_server", started)


@pytest.mark.parametrize(("argv", "code", "message"), MISTAKES)
def test_each_mistake_is_one_line_before_prefect(tmp_path, monkeypatch, argv, code, message):
    from dars.storage.cache import CACHE_ENV

    _no_prefect(monkeypatch)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    slots = {"empty": str(tmp_path / "empty"), "real": "", "cache": str(tmp_path / "cache")}
    if "{real}" in argv:
        slots["real"] = str(_real_pool_config(tmp_path))
    result = runner.invoke(app, [a.format(**slots) for a in argv])
    lines = _lines(result.output)
    assert result.exit_code == code, result.output
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())


@pytest.mark.parametrize("command", [["collect"], ["run"], ["rerun", "--failed"]])
def test_no_terminal_no_spend_without_yes(tmp_path, monkeypatch, command):
    # The plan is printed, then one line naming --yes; nothing is called.
    _no_prefect(monkeypatch)
    for key in KEYS:
        monkeypatch.setenv(key, "sk-test-not-a-key")
    result = runner.invoke(app, [*command, "-c", str(_real_pool_config(tmp_path))])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in _lines(result.output) if ln.startswith("error")]
    assert errors == [_lines(result.output)[-1]]
    assert "no terminal is attached to confirm; pass --yes" in errors[0]
    assert "Traceback" not in result.output and not (tmp_path / "run" / "observations").exists()


def test_dry_run_prints_the_plan_and_calls_nothing(tmp_path, monkeypatch):
    _no_prefect(monkeypatch)
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    config = _real_pool_config(tmp_path)
    for argv in (["collect", "--dry-run"], ["run", "--dry-run"]):
        result = runner.invoke(app, [*argv, "-c", str(config)])
        assert result.exit_code == 0, result.output
        out = result.output
        assert "calls still to make" in out and "at most $" in out
        assert f"warning: {MISSING_KEYS.replace('set ', '')}" in " ".join(out.split())
        assert _lines(out)[-1] == "dry run: no call was made"
    assert not (tmp_path / "run" / "observations").exists()


def test_simulated_pool_asks_nothing(tmp_path, monkeypatch):
    # The demo pool costs nothing: no key, no question, no --yes; the dry run shows the plan.
    _no_prefect(monkeypatch)
    result = runner.invoke(app, ["collect", "--dry-run", "-c", str(_tiny_config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "missing API key" not in result.output and "dry run: no call was made" in result.output


def test_verbose_keeps_the_traceback(tmp_path):
    result = runner.invoke(app, ["train", "-c", DEMO, "--root", str(tmp_path), "-v"])
    assert result.exit_code != 0
    assert "nothing to train on" in str(result.exception)
