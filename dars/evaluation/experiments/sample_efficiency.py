"""The sample-efficiency experiment (the paper's Fig 4a): DARS routers trained on sub-protocols.

The supervise stage's ``subgrid`` table holds full DARS computed on seeded k-rewrites ×
m-decodes sub-grids of the training grid. For every sweep family and every (k, m) protocol the
router is fitted in memory on that protocol's targets (q = μ, c = c̄, σ = q_std, like the ``dars``
supervision) and routes the test queries at (λ, β) of the experiment. When every protocol covers the
same training queries, one ``Router.fit_many`` call per family fits all protocols (protocols as
draws of ``BatchedTargets``); otherwise each is fitted alone.

Result ``sample_efficiency``: one row per (dataset, family, k, m, view) with ``n_obs = k·m``
and U, its bootstrap CI, Q and C (:func:`~dars.evaluation.refit.score_route_sets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl
from sklearn.base import clone

from dars.evaluation import plots
from dars.evaluation.document import Document, ReportRun, by_family_table, ci_width_text
from dars.evaluation.experiments.base import (
    EMBEDDINGS,
    VIEW_UTILITIES,
    ExperimentSpec,
    Inputs,
    View,
    register_experiment,
    supervision,
)
from dars.evaluation.refit import (
    SweepData,
    check_sweep_families,
    score_route_sets,
    select_schema,
    sweep_inputs,
    sweep_prototypes,
)
from dars.routers import BatchedTargets, Router, Targets, route_many
from dars.routers.training import training_targets

if TYPE_CHECKING:
    from dars.config import Experiment

__all__ = [
    "SAMPLE_EFFICIENCY_COLUMNS",
    "SPEC",
    "ProtocolTargets",
    "fit_protocols",
    "protocol_targets",
    "sample_efficiency",
    "sample_efficiency_table",
]

#: Schema of the ``sample_efficiency`` result.
SAMPLE_EFFICIENCY_COLUMNS = {
    "dataset": pl.String,
    "view": pl.String,
    "family": pl.String,
    "k": pl.Int32,
    "m": pl.Int32,
    "n_obs": pl.Int64,
    "U": pl.Float64,
    "U_low": pl.Float64,
    "U_high": pl.Float64,
    "Q": pl.Float64,
    "C": pl.Float64,
}
SUBGRID = supervision("subgrid")


class ProtocolTargets(NamedTuple):
    """Training targets of one (k, m) protocol: ``rows`` are positions into the train ids of
    the queries it covers (split order), ``targets`` their q = μ, c = c̄, σ = q_std."""

    k: int
    m: int
    rows: list[int]
    targets: Targets

    @property
    def n_obs(self) -> int:
        """Observations per (query, model) cell in the protocol."""
        return self.k * self.m


def protocol_targets(
    subgrid: pl.DataFrame, train_ids: Sequence[str], models: Sequence[str]
) -> list[ProtocolTargets]:
    """Training targets of every (k, m) protocol of a ``subgrid`` supervision table (one dataset).

    ``subgrid``: one row per (k, m, query_id, model) with the aggregate columns (``q_mean``,
    ``c_mean``, ``q_std``). A protocol keeps the queries that have a row for every model of
    ``models`` (a cell whose kept slots all failed is absent from the table, and a router needs
    the full row). Returns one :class:`ProtocolTargets` per protocol, sorted by (k, m).
    """
    need = ("k", "m", "query_id", "model", "q_mean", "c_mean", "q_std")
    missing = [c for c in need if c not in subgrid.columns]
    if missing:
        raise ValueError(f"subgrid table lacks column(s) {missing}; it has {subgrid.columns}")
    if subgrid.height == 0:
        raise ValueError("subgrid table is empty")
    models = list(models)
    out = []
    for (k, m), part in sorted(subgrid.group_by("k", "m"), key=lambda kv: kv[0]):
        part = part.filter(pl.col("model").is_in(models))
        full = (
            part.group_by("query_id")
            .agg(pl.col("model").n_unique().alias("n"))
            .filter(pl.col("n") == len(models))
        )
        part = part.join(full, on="query_id", how="semi").drop("k", "m")
        if part.height == 0:
            raise ValueError(
                f"subgrid protocol (k={k}, m={m}) has no train query with a row for every pool "
                f"model {models}"
            )
        try:
            rows, targets = training_targets(part, "dars", train_ids, models)
        except ValueError as exc:
            raise ValueError(f"subgrid protocol (k={k}, m={m}): {exc}") from exc
        out.append(ProtocolTargets(int(k), int(m), rows, targets))  # type: ignore[arg-type]
    return out


def fit_protocols(
    prototype: Router, X_train: np.ndarray, protocols: Sequence[ProtocolTargets]
) -> list[Router]:
    """One fitted clone of ``prototype`` per protocol (same order).

    ``X_train``: embeddings of every train query (rows = positions used by
    ``ProtocolTargets.rows``). When all protocols cover the same queries they are fitted in one
    ``fit_many`` call (each protocol a draw of ``BatchedTargets``; the result equals separate
    fits, see ``Router.fit_many``), except for families whose batched fit is approximate
    (``tags.batched_fit_exact`` False), which are fitted one by one.
    """
    if not protocols:
        raise ValueError("no protocol to fit")
    rows = protocols[0].rows
    if len(protocols) > 1 and all(p.rows == rows for p in protocols):
        batched = BatchedTargets.stack([p.targets for p in protocols])
        # The "draws" are protocols, not exchangeable single-shot draws: every curve point must
        # be its own fit with the experiment's seed (as the DARS router it ends at), so the
        # seeds are shared and families whose batching is approximate fit one by one.
        return prototype.fit_many(X_train[rows], batched, exact=True, seeds="shared")
    return [clone(prototype).fit(X_train[p.rows], p.targets) for p in protocols]


def sample_efficiency(
    subgrid: pl.DataFrame,
    data: SweepData,
    prototypes: Mapping[str, Router],
    *,
    lam: float,
    beta: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """The sample-efficiency curve of one dataset (routers are fitted in memory).

    ``subgrid``: the dataset's ``subgrid`` supervision (see :func:`protocol_targets`).
    ``prototypes``: family name → unfitted router (e.g.
    :func:`~dars.evaluation.refit.sweep_prototypes`). Every family is fitted on every (k, m)
    protocol (:func:`fit_protocols`) and routes ``data.test_ids`` at (``lam``, ``beta``).

    One row per (family, k, m, view), ordered so (family in ``prototypes`` order, then k, m,
    view): columns :data:`SAMPLE_EFFICIENCY_COLUMNS`; ``n_obs = k·m`` observations per training
    cell, ``U``/``Q``/``C`` and the CI as in :func:`~dars.evaluation.refit.score_route_sets`.
    """
    protocols = protocol_targets(subgrid, data.train_ids, data.models)
    keys = pl.DataFrame(
        {
            "k": [p.k for p in protocols],
            "m": [p.m for p in protocols],
            "n_obs": [p.n_obs for p in protocols],
        },
        schema={"k": pl.Int32, "m": pl.Int32, "n_obs": pl.Int64},
    )
    parts = []
    for family, proto in prototypes.items():
        routers = fit_protocols(proto, data.X_train, protocols)
        routes = route_many(routers, data.X_test, lam=lam, beta=beta)
        scored = score_route_sets(
            routes,
            data.test_ids,
            data.models,
            data.view_util,
            dataset=data.dataset,
            keys=keys.with_columns(family=pl.lit(family, pl.String)),
            n_boot=n_boot,
            seed=seed,
        )
        parts.append(scored)
    return select_schema(parts, SAMPLE_EFFICIENCY_COLUMNS)


def compute(inputs: Inputs, exp: Experiment) -> dict[str, pl.DataFrame]:
    """:func:`sample_efficiency` of every benchmark (in config order) with the sweep families
    at (``exp.lam``, ``exp.beta``)."""
    prototypes = sweep_prototypes(exp)
    parts = [
        sample_efficiency(
            subgrid,
            data,
            prototypes,
            lam=exp.lam,
            beta=exp.beta,
            n_boot=exp.evaluation.n_boot,
            seed=exp.seed,
        )
        for subgrid, data in sweep_inputs(inputs, exp, SUBGRID)
    ]
    return {"sample_efficiency": select_schema(parts, SAMPLE_EFFICIENCY_COLUMNS)}


def sample_efficiency_table(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Fig 4a's numbers for one dataset: one row per (family, view), one column per training
    protocol ``k×m`` (ordered by n_obs = k·m), cells the test utility U of the DARS router."""
    return by_family_table(frame, dataset, ("n_obs", "k", "m"), lambda k: f"{k[1]}×{k[2]}")


def section(doc: Document, run: ReportRun) -> None:
    """Fig 4a and its numbers per dataset."""
    se = run.result(doc, "sample_efficiency")
    if se is None:
        return
    doc.p(
        "DARS routers trained on sub-protocols of k rewrites × m decodes per (query, model), "
        "evaluated on the full test views."
    )
    doc.figure(
        "fig4a_sample_efficiency",
        plots.sample_efficiency_curves(se, datasets=run.datasets),
        f"Fig 4a: test utility against the training protocol k×m; {ci_width_text(se)}",
    )
    for d in [d for d in run.datasets if d in set(se["dataset"].to_list())]:
        doc.h(3, f"Sample efficiency — {d} (U)")
        doc.table(sample_efficiency_table(se, d))


def view(tables: Mapping[str, pl.DataFrame]) -> list[View]:
    """U per (dataset, view, family), one column per protocol k×m."""
    frame = tables["sample_efficiency"]
    if frame.height:
        frame = frame.with_columns(
            (pl.col("k").cast(pl.String) + "×" + pl.col("m").cast(pl.String)).alias("k×m")
        ).pivot(on="k×m", index=["dataset", "view", "family"], values="U", sort_columns=False)
    return [View("sample_efficiency", frame)]


SPEC = register_experiment(
    ExperimentSpec(
        name="sample_efficiency",
        help="Routers trained on k×m sub-protocols of the train grid (Fig 4a) → "
        "results/sample_efficiency.",
        title="Sample efficiency",
        order=40,
        inputs=(SUBGRID, VIEW_UTILITIES, EMBEDDINGS),
        compute=compute,
        tables={"sample_efficiency": SAMPLE_EFFICIENCY_COLUMNS},
        section=section,
        view=view,
        figures=("fig4a_sample_efficiency",),
        check=check_sweep_families,
    )
)
