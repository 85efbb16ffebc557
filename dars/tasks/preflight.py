"""What a stage needs before it starts, read from the run's files: no Prefect, no model call.

The CLI asks these before it starts Prefect (its server and imports cost seconds to minutes),
so a stage run on a root that lacks its inputs is one line naming what is missing and the
command that writes it, instead of a flow whose every task fails. Each function returns that
line, or None when the stage can start; the stages still check their inputs themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dars.config import Experiment
from dars.storage import scan_observations
from dars.storage.layout import RunLayout
from dars.storage.results import result_exists
from dars.storage.supervision_store import supervision_exists

#: The supervision tables the train stage reads (``dars.tasks.train``), all written by supervise.
TRAIN_TABLES = ("single_shot_draws", "dars", "ablations")


def _command(stage: str, config: str | None, root: str) -> str:
    conf = f" --config {config}" if config else ""
    return f"`dars {stage}{conf} --root {root}`"


def _problem(what: str, lacking: list[str], where: object, then: str) -> str | None:
    """One line: ``what`` of the datasets ``lacking`` is missing under ``where``; ``then``."""
    if not lacking:
        return None
    return f"{what} of {', '.join(lacking)} under {where}; {then}"


def supervise_problem(exp: Experiment, config: str | None = None) -> str | None:
    """Datasets of ``exp`` without one ok train observation in the store, as one line."""
    lacking = [
        b.name
        for b in exp.benchmarks
        if scan_observations(exp.root, dataset=b.name, split="train", status="ok")
        .head(1)
        .collect()
        .height
        == 0
    ]
    return _problem(
        "nothing to supervise: no ok train observations",
        lacking,
        RunLayout(exp.root).observations_dir(),
        f"collect them first with {_command('collect', config, exp.root)}",
    )


def train_problem(exp: Experiment, config: str | None = None) -> str | None:
    """Datasets of ``exp`` lacking a supervision table the train stage reads, as one line."""
    lacking = [
        b.name
        for b in exp.benchmarks
        if not all(supervision_exists(exp.root, b.name, t) for t in TRAIN_TABLES)
    ]
    return _problem(
        "nothing to train on: no supervision",
        lacking,
        RunLayout(exp.root).supervision_dir(),
        f"write it first with {_command('supervise', config, exp.root)}",
    )


def evaluate_problem(exp: Experiment, config: str | None = None) -> str | None:
    """One line when no dataset of ``exp`` has a supervision table or an observation: every
    experiment reads one of them, so each would fail. A root that holds some inputs goes to the
    experiments, which name what they lack."""
    datasets = [b.name for b in exp.benchmarks]
    for d in datasets:
        if supervision_exists(exp.root, d, "summary"):
            return None
        if scan_observations(exp.root, dataset=d).head(1).collect().height:
            return None
    return _problem(
        "nothing to evaluate: no observations and no supervision",
        datasets,
        exp.root,
        f"run the pipeline first with {_command('run', config, exp.root)}",
    )


def report_problem(exp: Experiment, tables: Sequence[str], config: str | None = None) -> str | None:
    """One line when none of the result ``tables`` is written (a report would be empty); a
    report with some results missing is written with a note for each."""
    if any(result_exists(exp.root, t) for t in tables):
        return None
    where = RunLayout(exp.root).results_dir()
    return (
        f"nothing to report: no results under {where}; run the experiments first with "
        f"{_command('evaluate', config, exp.root)}"
    )


def missing_keys(exp: Experiment) -> list[str]:
    """Every environment variable a model of the pool (or the rewriter) names in
    ``api_key_env`` that is unset or empty, without repeats, in pool order. Prefect ``Secret``
    blocks (``api_key_secret``) are not read here: that needs the Prefect API, so a missing
    block is reported by the first call of its model (``dars.llm.keys``)."""
    out: list[str] = []
    specs = [] if exp.pool.simulated else list(exp.pool.models)
    if exp.rewriter is not None and not exp.pool.simulated:
        specs.append(exp.rewriter)
    for spec in specs:
        env = getattr(spec, "api_key_env", None)
        if env and not os.environ.get(env) and env not in out:
            out.append(env)
    return out
