"""What a flow run is called and tagged with, so the Prefect UI says what runs.

Every dars flow is declared with ``flow_run_name=run_name("<stage>")``: its runs are named
``<stage> <config name> root=<run root>`` (``collect demo root=runs/demo``) instead of Prefect's
random ``sage-beagle``. Each flow then calls :func:`label_run` with the loaded experiment and its
``run_label`` parameter, which adds the tags ``config:<name>``, ``root:<root>`` and, when a label
is given, ``label:<run_label>`` to its own run — whoever started it (the CLI, the pipeline flow, a
deployment or a trigger), so the UI can filter runs by config, root and label (the deployment
triggers pass ``run_label`` on, so every stage of one triggered chain carries the same label).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dars.config import Experiment


def describe(config: Any, root: str | None) -> tuple[str, str]:
    """(config name, run root) of a flow's ``config``/``root`` parameters, without validating.

    ``config`` is a loaded :class:`Experiment` or a YAML path (read for its ``name`` and
    ``root`` only: the flow loads and validates it next and reports any problem itself, so a
    bad file still gets a name — the file's stem — and a root of ``?``)."""
    if isinstance(config, Experiment):
        return config.name, str(root or config.root)
    path = Path(str(config))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    data = data if isinstance(data, dict) else {}
    # An Experiment without ``name``/``root`` gets the model's defaults; say the same here.
    fields = Experiment.model_fields
    name = str(data.get("name") or fields["name"].default) if data else path.stem
    return name, str(root or data.get("root") or (fields["root"].default if data else "?"))


def run_name(stage: str) -> Callable[[], str]:
    """A ``flow_run_name`` callable for the flow of ``stage``: Prefect calls it with no argument
    when the run starts, and the run's parameters (``config``, ``root``) are read from
    :mod:`prefect.runtime` — the unserialized values, a loaded experiment for a subflow."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters
        config_name, root = describe(params.get("config"), params.get("root"))
        return f"{stage} {config_name} root={root}"

    name.__name__ = f"{stage}_run_name"
    return name


def run_tags(exp: Experiment, run_label: str | None = None) -> list[str]:
    """The tags of every flow run of ``exp``: its config name and run root, and
    ``label:<run_label>`` when the run has a label."""
    tags = [f"config:{exp.name}", f"root:{exp.root}"]
    return tags if run_label is None else [*tags, f"label:{run_label}"]


def label_run(exp: Experiment, run_label: str | None = None) -> None:
    """Add :func:`run_tags` to the current flow run's tags (kept: the tags it was created with,
    e.g. a deployment's). Called first thing in a flow body, where the experiment is loaded;
    outside a flow run (a flow's ``.fn`` in a test) it does nothing."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    tags = sorted(set(ctx.flow_run.tags) | set(run_tags(exp, run_label)))
    if tags != sorted(ctx.flow_run.tags):
        ctx.client.update_flow_run(flow_run_id=ctx.flow_run.id, tags=tags)
        ctx.flow_run.tags = tags
