"""The DARS paper's own numbers, shown beside ours in the report (labelled as the paper's).

``paper_figures.yaml`` holds what Lai, Hu, Chen, Li and Ye (2026) report for their six-model pool
on GPQA, MATH-500 and DROP-800; each of our benchmarks is compared with the paper's dataset of
the same task type (:func:`paper_dataset`).
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping
from typing import Any

import yaml

from dars.benchmarks import get

__all__ = ["PAPER_DATASET_BY_TASK", "paper_columns", "paper_dataset", "paper_figures"]

#: Which of the paper's datasets a benchmark is compared with, by task type.
PAPER_DATASET_BY_TASK = {"mc": "gpqa", "math": "math500", "span": "drop800"}
_SECTIONS = (
    "setup",
    "diagnostics",
    "table1_main",
    "table2_ablation_mirt",
    "table5_rewrite_validity",
    "table6_scoring_validity",
)


@functools.cache
def paper_figures() -> dict[str, Any]:
    """The paper's reported numbers (``dars/evaluation/paper_figures.yaml``): keys ``setup``,
    ``diagnostics``, ``table1_main``, ``table2_ablation_mirt``, ``table5_rewrite_validity``,
    ``table6_scoring_validity``."""
    text = (
        importlib.resources.files("dars.evaluation")
        .joinpath("paper_figures.yaml")
        .read_text(encoding="utf-8")
    )
    data = yaml.safe_load(text)
    missing = [k for k in _SECTIONS if k not in data]
    if missing:
        raise ValueError(f"paper_figures.yaml lacks section(s) {missing}")
    return data


def paper_dataset(name: str) -> str | None:
    """The paper's dataset (gpqa / math500 / drop800) compared with benchmark ``name``: the one
    of the same task type (multiple choice / math / span); None when the benchmark is not
    registered or has no fixed task type (local files)."""
    try:
        task = get(name).task_type
    except (KeyError, TypeError, ValueError):
        return None
    return PAPER_DATASET_BY_TASK.get(task)


def paper_columns(table: Mapping[str, Any]) -> dict[str, int]:
    """Column name → position in the value lists of one of the paper's tables."""
    return {c: i for i, c in enumerate(table["columns"])}
