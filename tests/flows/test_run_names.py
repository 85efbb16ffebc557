"""What the Prefect server records about a dars run: flow-run names and tags that say what runs
(config name, run root), and the INFO logs of a CLI-started run (issue 13), read back through
Prefect's API from the session's test server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dars.config import Experiment
from dars.flows.names import describe, run_tags
from tests.flows.test_collect import tiny_demo_config
from tests.simstore import sim_experiment, write_sim_store

pytestmark = pytest.mark.flow

_REPO = Path(__file__).resolve().parents[2]


async def _runs(flow_name: str, root: str) -> list:
    """Flow runs of the flow ``flow_name`` tagged with run root ``root``, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"root:{root}"])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


async def _info_logs(flow_run_id) -> list:
    """Log lines of level INFO or above the server holds for one flow run (its tasks included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel

    async with get_client() as client:
        return await client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]),
                level=LogFilterLevel(ge_=20),
            )
        )


def test_describe_names_config_and_root_from_an_experiment_or_a_yaml(tmp_path):
    exp = sim_experiment(tmp_path / "r", config_path=tmp_path / "tiny.yaml")
    assert describe(exp, None) == ("test", str(tmp_path / "r"))
    assert describe(exp, "runs/b") == ("test", "runs/b")
    assert describe(str(tmp_path / "tiny.yaml"), None) == ("test", str(tmp_path / "r"))
    assert describe(str(tmp_path / "tiny.yaml"), "runs/b") == ("test", "runs/b")
    # A file the flow will reject still names the run: its stem, root unknown unless given.
    assert describe(str(tmp_path / "missing.yaml"), None) == ("missing", "?")
    (tmp_path / "bare.yaml").write_text("benchmarks: []\n")
    defaults = Experiment.model_fields
    assert describe(str(tmp_path / "bare.yaml"), None) == (
        defaults["name"].default,
        defaults["root"].default,
    )
    assert run_tags(exp) == ["config:test", f"root:{tmp_path / 'r'}"]
    assert run_tags(exp, "nightly")[-1] == "label:nightly"


def test_flow_runs_are_named_and_tagged_with_config_and_root(prefect_harness, tmp_path):
    from dars.flows.supervise import supervise_flow

    root = str(tmp_path / "named")
    config = tmp_path / "tiny.yaml"
    exp = sim_experiment(tmp_path / "not-used", n_train=6, n_items=12, config_path=config)
    write_sim_store(exp, root)

    supervise_flow(config=str(config), root=root)

    (run,) = asyncio.run(_runs("supervise", root))
    assert run.name == f"supervise test root={root}"
    assert {"config:test", f"root:{root}"} <= set(run.tags)
    assert run.state.is_completed()


def test_collect_and_its_subflows_say_what_runs(prefect_harness, tmp_path):
    """A tiny collect whose root parameter overrides the config's: the collect run and its
    rewrite and decode subflow runs are named after the stage, the config and that root, and
    tagged with both."""
    from dars.flows.collect import collect_flow

    root = str(tmp_path / "b")
    config = tiny_demo_config(tmp_path / "tiny.yaml", tmp_path / "config-root")
    collect_flow(str(config), root, workers=2)

    for stage in ("collect", "rewrite", "decode"):
        (run,) = asyncio.run(_runs(stage, root))
        assert run.name == f"{stage} demo root={root}"
        assert {"config:demo", f"root:{root}"} <= set(run.tags), stage
    assert not asyncio.run(_runs("collect", str(tmp_path / "config-root")))


def test_a_cli_run_is_quiet_in_the_terminal_but_ships_info_logs(prefect_harness, tmp_path):
    """`dars supervise` (a separate process, as a user runs it) against the session's server:
    no INFO line on the terminal without -v, and the server holds the flow's INFO logs (the CLI
    used to set PREFECT_LOGGING_LEVEL=WARNING, which silenced the API handler too: 0 lines)."""
    from prefect.settings import PREFECT_API_URL

    root = str(tmp_path / "cli")
    config = tmp_path / "tiny.yaml"
    exp = sim_experiment(root, n_train=6, n_items=12, config_path=config)
    write_sim_store(exp, root)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_LOGGING") and k != "PREFECT_API_URL"
    }
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONPATH=str(_REPO))
    cmd = [sys.executable, "-c", "from dars.cli import app; app(prog_name='dars')"]
    done = subprocess.run(
        [*cmd, "supervise", "--config", str(config), "--root", root],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    terminal = done.stdout + done.stderr
    assert "supervision written under" in terminal
    assert "INFO" not in terminal and "Flow run" not in terminal, terminal

    (run,) = asyncio.run(_runs("supervise", root))
    assert run.name == f"supervise test root={root}"
    logs = asyncio.run(_info_logs(run.id))
    messages = [log.message for log in logs]
    assert any("supervision of demo_mc" in m for m in messages), messages
