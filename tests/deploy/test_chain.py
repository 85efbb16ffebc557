"""The deployment chain as a platform team runs it, against a real ``prefect server`` (SQLite, and
PostgreSQL when installed): ``prefect deploy --all --prefect-file deploy/prefect.yaml``, a process
worker started outside the repository without ``DARS_HOME``, ``prefect deployment run
collect/dars-collect --param config=… --param root=… --param run_label=…``, then everything read
back through the Prefect API (fixtures in ``conftest.py``).

Issue 13 observed, on main: the triggered supervise/train/evaluate/report ran on the config's own
root (the triggers passed ``config`` only), a worker without ``DARS_HOME`` crashed
(``FileNotFoundError`` for ``dars/flows/…`` in a temporary directory), and a collect that had
nothing to do started the whole chain again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dars.storage.layout import RunLayout, shard_from_file_name

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
STAGES = ("collect", "supervise", "train", "evaluate", "report")


def test_the_trigger_chain_runs_every_stage_on_the_root_it_was_given(chain):
    runs = chain.runs
    assert set(runs) == set(STAGES), {s: r.state_name for s, r in runs.items()}
    for stage, run in runs.items():
        assert run.state_name == "Completed", (stage, run.state.message, chain.stack.logs())
        params = run.parameters
        # Every stage ran with the root and label of the collect run, and its config.
        assert params["root"] == str(chain.root), (stage, params)
        assert params["run_label"] == chain.label, (stage, params)
        assert params["config"] == str(chain.config), (stage, params)
        assert run.name == f"{stage} tiny root={chain.root}"
        assert {"config:tiny", f"root:{chain.root}", f"label:{chain.label}"} <= set(run.tags)
    # workers passes from train (the deployment's 2) to evaluate; collect keeps its own.
    assert runs["evaluate"].parameters["workers"] == runs["train"].parameters["workers"] == 2
    assert runs["collect"].parameters["workers"] == 4

    lay = RunLayout(chain.root)
    assert list(lay.supervision_dir("demo_mc").glob("*.parquet"))
    assert lay.router_keys("demo_mc")
    assert lay.results_file("main").is_file()
    assert lay.report_file("index", "html").is_file()
    # Nothing was written on the config's own root.
    assert not chain.config_root.exists()


def test_collect_runs_one_task_per_shard_named_by_its_partition(chain):
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    with chain.stack.client() as c:
        subflows = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[chain.collect_id])
            )
        )
        assert sorted(r.name.split()[0] for r in subflows) == ["decode", "rewrite"]
        tasks = c.read_task_runs(
            task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=[r.id for r in subflows])
            )
        )
    names = sorted(t.name for t in tasks if t.name.startswith(("decode ", "rewrite ")))

    # Each shard task wrote one store file: the shards are read back from the store.
    lay = RunLayout(chain.root)
    expected = []
    for f in lay.observations_dir().rglob("part-*.parquet"):
        d, s, m = (p.name.split("=", 1)[1] for p in (f.parents[2], f.parents[1], f.parent))
        expected.append(f"decode {d}/{s}/{m}/shard-{shard_from_file_name(f.name)}")
    for f in lay.rewrites_dir().rglob("part-*.parquet"):
        d, s = (p.name.split("=", 1)[1] for p in (f.parents[1], f.parent))
        expected.append(f"rewrite {d}/{s}/shard-{shard_from_file_name(f.name)}")
    assert len(expected) >= 8  # 2 models x (2 train + 1 test) shards, 3 rewrite shards
    assert names == sorted(expected)
    assert all(t.state_name == "Completed" for t in tasks), [(t.name, t.state_name) for t in tasks]


def _events(stack, name: str, since: datetime) -> list:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    with stack.client() as c:
        page = c.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)
            ),
            limit=50,
        )
    return page.events


def test_a_second_collect_that_changes_nothing_triggers_nothing(chain):
    stack = chain.stack
    since = datetime.now(UTC) - timedelta(seconds=1)
    run_id = stack.run_deployment(
        "collect/dars-collect", config=str(chain.config), root=str(chain.root), run_label="noop"
    )
    run = stack.wait_final(run_id)
    assert run.state_type.value == "COMPLETED" and run.state_name == "Unchanged", run.state
    assert "no new rows" in run.state.message

    # The server has recorded the run's last event; triggers react within a second of it.
    stack.wait_for(
        "the Unchanged event",
        lambda: [
            e
            for e in _events(stack, "prefect.flow-run.Unchanged", since)
            if e.resource.id == f"prefect.flow-run.{run_id}"
        ],
        timeout=120,
    )
    time.sleep(10)
    assert not _events(stack, "prefect.automation.triggered", since)
    started = [(stage, r.name) for stage, r in stack.deployment_runs(since) if r.id != run_id]
    assert started == []


def test_a_cli_run_ships_its_info_logs_to_the_server(sqlite_chain):
    """`dars supervise` started by hand with PREFECT_API_URL set: its INFO lines reach the server
    (the UI shows them) while the terminal stays quiet. Runs after the no-op test: it writes new
    supervision on the chain's root."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterExpectedStartTime,
        LogFilter,
        LogFilterFlowRunId,
        LogFilterLevel,
    )

    stack = sqlite_chain.stack
    since = datetime.now(UTC) - timedelta(seconds=1)
    dars = str(Path(sys.executable).parent / "dars")
    done = subprocess.run(
        [dars, "supervise", "--config", str(sqlite_chain.config), "--root", str(sqlite_chain.root)],
        env=stack.server.env(),
        cwd=stack.workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INFO" not in done.stdout + done.stderr

    with stack.client() as c:
        (run,) = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(is_null_=True),
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
            )
        )
        logs = c.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run.id]), level=LogFilterLevel(ge_=20)
            )
        )
    assert run.name == f"supervise tiny root={sqlite_chain.root}"
    messages = [log.message for log in logs]
    assert any("supervision of demo_mc" in m for m in messages), messages


def test_collect_evaluate_and_report_runs_publish_artifacts(sqlite_chain):
    """The UI shows, per triggered run, the artifacts of dars/flows/artifacts.py: the collect
    run's partition table, the evaluate run's main table, the report run's link."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    expected = {
        "collect": "tiny-collect-partitions",
        "evaluate": "tiny-evaluate-main",
        "report": "tiny-report-link",
    }
    with sqlite_chain.stack.client() as c:
        for stage, key in expected.items():
            run = sqlite_chain.runs[stage]
            arts = c.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
            assert key in {a.key for a in arts}, (stage, [a.key for a in arts])


def test_a_run_without_config_is_refused(sqlite_stack):
    """No deployment defaults to an experiment: the server refuses a run that names none."""
    with pytest.raises(RuntimeError, match=r"'config' is a\s+required property"):
        sqlite_stack.run_deployment("collect/dars-collect")


def test_the_pipeline_schedule_is_registered_paused_and_enabled_as_the_readme_says(
    sqlite_stack, tmp_path
):
    def schedule():
        with sqlite_stack.client() as c:
            (sched,) = c.read_deployment_by_name("pipeline/dars-pipeline").schedules
        return sched

    sched = schedule()
    assert sched.active is False
    assert sched.schedule.cron == "0 2 * * *"
    assert sched.parameters["root"] == "runs/nightly"
    assert (REPO / sched.parameters["config"]).is_file()
    params = sched.parameters

    # deploy/README.md step 6: `active: true` in the YAML, deploy again; then back.
    source = (REPO / "deploy" / "prefect.yaml").read_text()
    assert source.count("        active: false") == 1
    active = tmp_path / "prefect.yaml"
    active.write_text(source.replace("        active: false", "        active: true"))
    deploy = ("--no-prompt", "deploy", "--name", "dars-pipeline", "--prefect-file")
    sqlite_stack.prefect(*deploy, str(active))
    sched = schedule()
    assert sched.active is True and sched.parameters == params
    sqlite_stack.prefect(*deploy, str(REPO / "deploy" / "prefect.yaml"))
    assert schedule().active is False


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def readme_git_clone_pull() -> list[dict]:
    """The `pull:` section deploy/README.md gives for the git_clone layout (the YAML block after
    the marker comment), so the README and this test cannot drift apart."""
    text = (REPO / "deploy" / "README.md").read_text()
    block = re.search(r"<!-- git_clone pull -->\s*```yaml\n(.*?)```", text, re.DOTALL)
    assert block, "deploy/README.md lost its git_clone pull example"
    return yaml.safe_load(block.group(1))["pull"]


def test_the_git_clone_layout_runs_flows_from_a_fresh_clone(sqlite_chain, tmp_path):
    """The README's git_clone pull section, pointed at a bare repository holding this tree: the
    run clones it into the worker's temporary directory and runs the flow from the clone."""
    stack = sqlite_chain.stack
    src = tmp_path / "src"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "snapshot", cwd=src)
    bare = tmp_path / "dars.git"
    _git("clone", "-q", "--bare", str(src), str(bare), cwd=tmp_path)

    pull = json.loads(
        json.dumps(readme_git_clone_pull()).replace(
            "https://github.com/your-org/dars.git", f"file://{bare}"
        )
    )
    spec = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
    (report,) = [d for d in spec["deployments"] if d["name"] == "dars-report"]
    report = {**report, "name": "dars-report-git", "triggers": []}
    spec.update(pull=pull, deployments=[report])
    git_yaml = tmp_path / "prefect-git.yaml"
    git_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    stack.prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(git_yaml))

    since = datetime.now(UTC) - timedelta(seconds=1)
    html = RunLayout(sqlite_chain.root).report_file("index", "html")
    before = html.stat().st_mtime_ns
    run_id = stack.run_deployment(
        "report/dars-report-git", config=str(sqlite_chain.config), root=str(sqlite_chain.root)
    )
    run = stack.wait_final(run_id)
    assert run.state_name == "Completed", (run.state.message, stack.logs())
    assert html.stat().st_mtime_ns > before
    # The pull steps that ran for this flow run: the README's, in order.
    steps = stack.wait_for(
        "the pull-step events",
        lambda: [
            e.payload["step_name"]
            for e in sorted(
                _events(stack, "prefect.flow-run.pull-step.executed", since),
                key=lambda e: e.occurred,
            )
            if e.resource.id == f"prefect.flow-run.{run_id}"
        ],
        timeout=120,
    )
    assert steps == ["git_clone", "set_working_directory"]
