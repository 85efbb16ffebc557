"""The files of deploy/ read without a server: the trigger parameters of deploy/prefect.yaml as
Prefect's automation service renders them, the schedule and defaults, the Docker Compose file
(no Docker daemon here: its structure, and that no secret is written in it) and the PostgreSQL
script's failure modes."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.server.events.actions import RunDeployment
from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}
COMPOSE = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
SCRIPT = REPO / "deploy" / "postgres-server.sh"


class _FlowRun:
    """What the automation's template context calls ``flow_run``: the upstream run."""

    def __init__(self, parameters: dict) -> None:
        self.parameters = parameters


def render(trigger_parameters: dict, upstream: dict) -> dict:
    """Trigger parameters rendered as the server renders them for a RunDeployment action
    (v1 templates upgraded, then hydrated with the upstream run as ``flow_run``)."""
    params = yaml.safe_load(yaml.safe_dump(trigger_parameters))
    RunDeployment._upgrade_v1_templates(params)
    ctx = HydrationContext(
        raise_on_error=True, render_jinja=True, jinja_context={"flow_run": _FlowRun(upstream)}
    )
    return hydrate(params, ctx)


def _accepted(dep: dict) -> set[str]:
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return set(inspect.signature(load_flow_from_entrypoint(dep["entrypoint"]).fn).parameters)
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", ["dars-supervise", "dars-train", "dars-evaluate", "dars-report"])
def test_triggers_pass_every_upstream_parameter_the_next_flow_takes(name):
    dep = DEPLOYMENTS[name]
    (trigger,) = dep["triggers"]
    upstream = DEPLOYMENTS[trigger["match_related"]["prefect.resource.name"]]
    shared = _accepted(upstream) & _accepted(dep)
    assert set(trigger["parameters"]) == shared, (name, shared)

    run = {"config": "configs/x.yaml", "root": "runs/b", "run_label": "nightly", "workers": 3}
    got = render(trigger["parameters"], {k: v for k, v in run.items() if k in _accepted(upstream)})
    assert got == {k: run[k] for k in shared}
    # Null upstream arrives null (not "None"); a parameter the upstream run lacks arrives null.
    got = render(trigger["parameters"], {"config": "c.yaml", "root": None})
    assert got["root"] is None and got.get("run_label") is None
    if "workers" in got:
        assert got["workers"] == 2


def test_no_deployment_defaults_to_an_experiment_and_parameters_are_accepted():
    for name, dep in DEPLOYMENTS.items():
        assert "config" not in dep["parameters"], name
        assert set(dep["parameters"]) <= _accepted(dep), name
        # Every parameter a trigger may copy exists on the upstream run (no missing keys).
        assert {"root", "run_label"} <= set(dep["parameters"]), name
    assert SPEC["pull"] == [{"dars.deploy.use_home": {}}]


def test_the_pipeline_ships_a_paused_cron_schedule_with_its_own_parameters():
    (sched,) = DEPLOYMENTS["dars-pipeline"]["schedules"]
    assert sched["active"] is False and sched["cron"] == "0 2 * * *"
    assert (REPO / sched["parameters"]["config"]).is_file()
    assert set(sched["parameters"]) <= _accepted(DEPLOYMENTS["dars-pipeline"])


# -- docker-compose.yml -----------------------------------------------------------------------
SECRETISH = re.compile(r"(PASSWORD|KEY|TOKEN|SECRET)", re.IGNORECASE)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_has_server_postgres_worker_and_a_store_volume():
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "server", "worker"}
    assert services["postgres"]["image"].startswith("postgres:15")
    url = _environment(services["server"])["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    worker = services["worker"]
    assert _environment(worker)["PREFECT_API_URL"] == "http://server:4200/api"
    assert _environment(worker)["DARS_HOME"] == "/opt/dars"
    mounts = {m.split(":")[0]: m.split(":")[1] for m in worker["volumes"]}
    assert mounts.get("dars-runs") == "/runs" and "dars-runs" in COMPOSE["volumes"]
    assert worker["depends_on"]["server"]["condition"] == "service_healthy"
    assert services["server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The UI is published on the host's loopback only.
    assert services["server"]["ports"] == ["127.0.0.1:4200:4200"]
    # The worker's start command is valid shell.
    command = worker["command"]
    assert command[:2] == ["bash", "-c"]
    subprocess.run(["bash", "-n", "-c", command[2]], check=True)


def test_compose_writes_no_secret_only_references_to_the_environment():
    for name, service in COMPOSE["services"].items():
        for key, value in _environment(service).items():
            if SECRETISH.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[-?][^}]*)?\}", value), (name, key, value)
        url = _environment(service).get("PREFECT_API_DATABASE_CONNECTION_URL")
        if url:
            password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
            assert password.startswith("${POSTGRES_PASSWORD"), url
    # The password is required, not defaulted.
    assert (
        "${POSTGRES_PASSWORD:?"
        in _environment(COMPOSE["services"]["postgres"])["POSTGRES_PASSWORD"]
    )


# -- postgres-server.sh -----------------------------------------------------------------------
def test_postgres_script_is_valid_bash_and_executable():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert os.access(SCRIPT, os.X_OK)


def test_postgres_script_without_postgresql_fails_in_one_line(tmp_path):
    env = {**os.environ, "PG_BIN": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:/bin"}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "initdb/pg_ctl not found" in done.stderr
    assert "apt-get install -y postgresql" in done.stderr
