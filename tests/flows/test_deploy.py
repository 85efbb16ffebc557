"""deploy/prefect.yaml: every deployment loads its flow, passes only parameters the flow takes,
and the completion triggers chain the stages in DAG order."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_loads_its_flow_with_valid_parameters(name, monkeypatch):
    monkeypatch.chdir(REPO)
    dep = DEPLOYMENTS[name]
    flow = load_flow_from_entrypoint(dep["entrypoint"])
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(dep["parameters"]) <= accepted, (name, set(dep["parameters"]) - accepted)
    # Every run names its config (tests/deploy/test_files.py checks the rest of the defaults).
    assert "config" not in dep["parameters"]
    for trig in dep.get("triggers", []):
        parsed = DeploymentEventTrigger.model_validate(trig)
        assert parsed.expect == {"prefect.flow-run.Completed"}
        assert set(parsed.parameters or {}) <= accepted


def test_triggers_chain_the_stages_in_dag_order():
    upstream = {
        name: dep["triggers"][0]["match_related"]["prefect.resource.name"]
        for name, dep in DEPLOYMENTS.items()
        if dep.get("triggers")
    }
    assert upstream == {
        "dars-supervise": "dars-collect",
        "dars-train": "dars-supervise",
        "dars-evaluate": "dars-train",
        "dars-report": "dars-evaluate",
    }
    # The pipeline deployment and the head of the chain start by hand or on a schedule.
    assert "dars-pipeline" not in upstream and "dars-collect" not in upstream
