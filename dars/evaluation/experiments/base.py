"""What an evaluation experiment is: a registered :class:`ExperimentSpec`.

A spec says everything the rest of the package needs to run and show one experiment, so adding
an experiment is one module of :mod:`dars.evaluation.experiments` (or an entry point of group
``dars.experiments`` in another package) and nothing else:

``name``, ``help``, ``title``, ``order``
    ``dars experiment <name>``, its one-line help, the report section's title and its place
    (sections and result tables appear in ``order``);
``inputs``
    the stored inputs it needs, from the fixed vocabulary below, which the evaluate task
    (:mod:`dars.tasks.evaluate`) reads through storage;
``compute(inputs, exp)``
    pure: ``{Input: value}`` and the experiment config → ``{table name: frame}``; a table may
    be given as ``(frame, extras)`` to add keys to its JSON twin. A declared table the compute
    does not return no longer applies and is removed from ``results/``;
``tables``
    table name → polars schema, in report order (the task checks every frame against it);
``section(doc, run)``
    adds the experiment's blocks to the report (:class:`~dars.evaluation.document.Document`)
    from the result tables (:class:`~dars.evaluation.document.ReportRun`);
``figures``
    the file stems of the figures the section may draw (``{dataset}`` stands for a dataset);
``view(tables)``
    the small frames ``dars experiment``/``dars evaluate`` print;
``check(exp)``
    optional: rejects bad settings (e.g. unknown router families) before any input is read.

Input vocabulary (:data:`INPUT_KINDS`; datasets are the experiment's benchmarks, in config
order):

=================  ===========================================================================
view_utilities     ``{dataset: view_utilities rows}``: the test observations of the pool
                   models scored per (view, query, model) at the experiment's λ, cost on one
                   scale over all of the dataset's observations (:mod:`dars.evaluation.metrics`)
routes             ``{(dataset, family, supervision): routes rows}`` of every router trained to
                   the end (one row per (draw, query_id): ``model``, ``model_index``);
                   (family, supervision) sorted within a dataset
lam_routes         ``{(dataset, family, supervision): λ-sweep routes rows or None}`` of every
                   router of a λ-sweep supervision (single_shot, dars) trained to the end; None:
                   the router was trained before the train stage wrote λ-sweep routes
supervision        ``{dataset: rows}`` of one supervision table (``supervision("dars")``);
                   optional tables leave out the datasets without one
embeddings         ``{dataset: QueryEmbeddings}``: train and test query embeddings
observations       one frame of every observation of the pool models on the benchmarks (every
                   split and status): the observation key, ``response``, ``parse_ok``,
                   ``score``, ``status``
rewrites           one frame of every stored rewrite of the benchmarks
items              ``{dataset: items}`` of both splits
benchmarks         ``{dataset: Benchmark}`` as configured (the scorers)
=================  ===========================================================================

A compute that finds an input missing or stale raises :class:`MissingInputError` /
:class:`StaleInputError` saying what is wrong and the command that fixes it, with ``where`` =
the (input, key) pairs concerned; the task layer adds the files they live in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import polars as pl

from dars.evaluation.document import Document, ReportRun
from dars.registry import Registry

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = [
    "BENCHMARKS",
    "EMBEDDINGS",
    "EXPERIMENTS",
    "INPUT_KINDS",
    "ITEMS",
    "LAM_ROUTES",
    "OBSERVATIONS",
    "REWRITES",
    "ROUTES",
    "VIEW_UTILITIES",
    "ExperimentSpec",
    "Input",
    "InputError",
    "Inputs",
    "MissingInputError",
    "QueryEmbeddings",
    "StaleInputError",
    "Tables",
    "View",
    "check_experiments",
    "experiments",
    "register_experiment",
    "supervision",
    "table_producers",
]

#: The stored inputs an experiment can ask for (see the module docstring).
INPUT_KINDS: tuple[str, ...] = (
    "view_utilities",
    "routes",
    "lam_routes",
    "supervision",
    "embeddings",
    "observations",
    "rewrites",
    "items",
    "benchmarks",
)


@dataclass(frozen=True)
class Input:
    """One stored input: ``kind`` from :data:`INPUT_KINDS`; ``table`` names the supervision
    table (kind ``supervision`` only); ``optional`` supervision tables leave out the datasets
    that have none instead of failing."""

    kind: str
    table: str | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {self.kind!r}; valid: {', '.join(INPUT_KINDS)}")
        if (self.kind == "supervision") != (self.table is not None):
            raise ValueError("an input names a table if and only if its kind is 'supervision'")
        if self.optional and self.kind != "supervision":
            raise ValueError(f"input {self.kind!r} cannot be optional (supervision tables can)")

    def __str__(self) -> str:
        name = f"supervision:{self.table}" if self.table else self.kind
        return f"{name} (optional)" if self.optional else name


VIEW_UTILITIES = Input("view_utilities")
ROUTES = Input("routes")
LAM_ROUTES = Input("lam_routes")
EMBEDDINGS = Input("embeddings")
OBSERVATIONS = Input("observations")
REWRITES = Input("rewrites")
ITEMS = Input("items")
BENCHMARKS = Input("benchmarks")


def supervision(table: str, *, optional: bool = False) -> Input:
    """The input ``{dataset: rows}`` of supervision table ``table`` (e.g. ``"dars"``)."""
    return Input("supervision", table=table, optional=optional)


class QueryEmbeddings(NamedTuple):
    """Embeddings of one dataset's queries: ids in split order, one float32 row each."""

    train_ids: list[str]
    X_train: np.ndarray
    test_ids: list[str]
    X_test: np.ndarray


class InputError(Exception):
    """A stored input of an experiment is missing or stale. The message says what and the
    command that fixes it; ``where`` lists the (input, key) pairs concerned — key ``(dataset,
    family, supervision)`` for routes, ``dataset`` for supervision, None for a whole store — so
    the task layer can name their files."""

    def __init__(self, message: str, where: Sequence[tuple[Input, Any]] = ()) -> None:
        super().__init__(message)
        self.where = tuple(where)


class MissingInputError(InputError, FileNotFoundError):
    """A stored input the experiment needs does not exist."""


class StaleInputError(InputError, ValueError):
    """A stored input exists but was produced with other settings."""


class View(NamedTuple):
    """One frame the CLI prints for an experiment, under ``title``."""

    title: str
    frame: pl.DataFrame


#: What ``compute`` gets: every declared input → its value (see the vocabulary above).
Inputs = Mapping[Input, Any]
#: What ``compute`` returns: table name → frame, or (frame, extra keys of its JSON twin).
Tables = Mapping[str, "pl.DataFrame | tuple[pl.DataFrame, Mapping[str, Any]]"]
#: A table's polars schema: column name → dtype, in order.
Schema = Mapping[str, Any]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, eq=False)
class ExperimentSpec:
    """One evaluation experiment (see the module docstring for every field)."""

    name: str
    help: str
    title: str
    order: int
    inputs: tuple[Input, ...]
    compute: Callable[[Inputs, Experiment], Tables]
    tables: Mapping[str, Schema]
    section: Callable[[Document, ReportRun], None]
    view: Callable[[Mapping[str, pl.DataFrame]], list[View]]
    figures: tuple[str, ...] = ()
    check: Callable[[Experiment], None] | None = None

    def __post_init__(self) -> None:
        where = f"experiment {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"experiment name {self.name!r} must match {_NAME.pattern}")
        if not self.help.strip() or "\n" in self.help.strip():
            raise ValueError(f"{where}: help must be one non-empty line")
        if not self.title.strip():
            raise ValueError(f"{where}: title is empty")
        bad = [i for i in self.inputs if not isinstance(i, Input)]
        if bad:
            raise TypeError(f"{where}: inputs must be Input objects, got {bad}")
        if not self.tables:
            raise ValueError(f"{where} declares no table")
        bad = [t for t in self.tables if not _NAME.match(t)]
        if bad:
            raise ValueError(f"{where}: table name(s) {bad} must match {_NAME.pattern}")
        for field in ("compute", "section", "view"):
            if not callable(getattr(self, field)):
                raise TypeError(f"{where}: {field} must be callable")


#: Every experiment: our modules in this package, and entry points of group ``dars.experiments``
#: (``mine = "my_pkg.experiment:SPEC"``, SPEC an ExperimentSpec).
EXPERIMENTS: Registry[ExperimentSpec] = Registry(
    "experiment",
    ExperimentSpec,
    instances=True,
    package="dars.evaluation.experiments",
    group="dars.experiments",
)


def register_experiment(spec: ExperimentSpec) -> ExperimentSpec:
    """Register ``spec`` under its name (a name already taken by another spec is rejected);
    returns it, so a module can write ``SPEC = register_experiment(ExperimentSpec(...))``."""
    EXPERIMENTS.add(spec.name, spec)
    return spec


def experiments() -> list[ExperimentSpec]:
    """Every registered experiment, in report order (``order``, then name)."""
    return sorted((spec for _, spec in EXPERIMENTS.items()), key=lambda s: (s.order, s.name))


def check_experiments(names: Sequence[str] | None) -> list[str]:
    """``names`` (default: every experiment, in report order) as a list; UnknownNameError
    (a ValueError) naming unknown ones and listing the available ones."""
    if names is None:
        return [spec.name for spec in experiments()]
    return EXPERIMENTS.check(names)


def table_producers() -> dict[str, str]:
    """Result table → the experiment that writes it, in report order; ValueError when two
    experiments declare the same table (one would overwrite the other's file)."""
    out: dict[str, str] = {}
    for spec in experiments():
        for table in spec.tables:
            if table in out:
                raise ValueError(
                    f"result table {table!r} is declared by experiments {out[table]!r} and "
                    f"{spec.name!r}; a table belongs to one experiment"
                )
            out[table] = spec.name
    return out
