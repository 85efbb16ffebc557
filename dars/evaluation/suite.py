"""The evaluation experiments by name: what ``dars experiment <name>`` and the evaluate flow run.

Each experiment reads its inputs from storage (test observations, supervision tables, trained
routes) and writes one or more result tables (``results/<table>.{parquet,json}``):

=================  ==========================================================  ==================
experiment         what                                                        result tables
=================  ==========================================================  ==================
main               every family × {single-shot, DARS, ablations} on both test  main
                   views, best fixed / random / oracle (Tables 1 and 4)
ablation           the six supervision variants of one family (Table 2)        ablation
sample_efficiency  routers trained on k×m sub-protocols (Fig 4a)               sample_efficiency
pareto             λ sweep → cost–quality frontiers, budget table (Fig 4b)     pareto,
                                                                               pareto_budget
beta               β sweep of DARS routers (Fig 4c)                            beta
diagnostics        label instability, variance split, single-shot router       diagnostics,
                   utility distribution, label recovery (Fig 2)                single_shot_dist…,
                                                                               recovery
validity           rewrite and scoring validity (Tables 5 and 6)               rewrite_validity,
                                                                               scoring_validity
=================  ==========================================================  ==================

The experiments are independent of each other (each reads only stage outputs), so the evaluate
flow runs them side by side; the report reads their tables.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dars.config import Experiment
from dars.evaluation.results import PRODUCED_BY

__all__ = [
    "EXPERIMENTS",
    "EXPERIMENT_HELP",
    "check_experiments",
    "experiment_function",
    "run_experiment",
    "tables_of",
]

#: Experiment name → ``module:function`` (imported on use: torch-backed sweeps cost start-up).
EXPERIMENTS: dict[str, str] = {
    "main": "dars.evaluation.stage:evaluate_main",
    "ablation": "dars.evaluation.experiments:evaluate_ablation",
    "sample_efficiency": "dars.evaluation.sweeps:evaluate_sample_efficiency",
    "pareto": "dars.evaluation.pareto:evaluate_pareto",
    "beta": "dars.evaluation.sweeps:evaluate_beta",
    "diagnostics": "dars.evaluation.experiments:evaluate_diagnostics",
    "validity": "dars.evaluation.experiments:evaluate_validity",
}

#: One line per experiment (the CLI's help).
EXPERIMENT_HELP: dict[str, str] = {
    "main": "Every family × {single-shot, DARS, ablations} on both test views, with best fixed, "
    "random and oracle rows (Tables 1 and 4) → results/main.",
    "ablation": "The six supervision variants of `evaluation.ablation_family` (default mirt) with "
    "an average column (Table 2) → results/ablation.",
    "sample_efficiency": "Routers trained on k×m sub-protocols of the train grid (Fig 4a) → "
    "results/sample_efficiency.",
    "pareto": "λ sweep of single-shot and DARS routers → cost–quality frontiers and a "
    "budget table (Fig 4b) → results/pareto, results/pareto_budget.",
    "beta": "β sweep of DARS routers (Fig 4c) → results/beta.",
    "diagnostics": "Label instability, variance split, single-shot router utility distribution "
    "and label recovery (Fig 2) → results/diagnostics, single_shot_distribution, recovery.",
    "validity": "Rewrite and scoring validity (Tables 5 and 6) → results/rewrite_validity, "
    "results/scoring_validity.",
}


def check_experiments(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """``names`` (default: every experiment, in table order) as a list; ValueError naming
    unknown ones and listing the valid ones."""
    if names is None:
        return list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; valid: {', '.join(EXPERIMENTS)}")
    if not names:
        raise ValueError(f"no experiment given; valid: {', '.join(EXPERIMENTS)}")
    return list(names)


def tables_of(name: str) -> list[str]:
    """The result tables experiment ``name`` writes."""
    check_experiments([name])
    return [table for table, exp in PRODUCED_BY.items() if exp == name]


def experiment_function(name: str) -> Callable[..., Any]:
    """The I/O function of experiment ``name``: ``f(exp, root) -> result``."""
    check_experiments([name])
    module, func = EXPERIMENTS[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_experiment(exp: Experiment, root: str | Path, name: str) -> Any:
    """Run experiment ``name`` on the run under ``root``; returns what its function returns
    (the main result table, or a dict of tables for experiments that write several)."""
    return experiment_function(name)(exp, root)
