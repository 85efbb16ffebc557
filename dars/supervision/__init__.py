"""Distribution-aware supervision: pure polars/numpy functions over observation frames.

Observation frames come from the observation store (one row per generation); only rows with
``status == "ok"`` are used. See :mod:`dars.supervision.core` for the shared conventions
(per-dataset min-max cost normalisation, ddof=1 spreads, ``u = q_mean - λ c_mean - β q_std``).
Every function that takes observations also takes them prepared once
(:func:`~dars.supervision.core.prepare_once`), so computing many supervisions of one frame
validates, normalises and key-codes it once.
"""

from dars.supervision.ablations import (
    ABLATIONS,
    decoding_risk,
    full_dars,
    get_ablation,
    input_only,
    output_only,
    rewrite_risk,
    subgrid_dars,
    subgrid_observations,
    without_risk,
)
from dars.supervision.core import (
    AGGREGATE_COLUMNS,
    PreparedObservations,
    QueryModelArrays,
    aggregate,
    cost_bounds,
    normalise_cost,
    prepare_observations,
    prepare_once,
    restrict_to_pool,
    to_arrays,
)
from dars.supervision.diagnostics import (
    DEFAULT_DEFINITION,
    DEFINITIONS,
    DIAGNOSTICS_SCHEMA,
    METRIC_COLUMNS,
    Definition,
    bootstrap_ratio,
    diagnostics,
    diagnostics_table,
    outcome_instability,
    single_shot_diagnostics,
    single_vs_da_disagreement,
    variance_components,
    variance_split,
    winner_flip_rate,
)
from dars.supervision.labels import (
    TAU,
    TIE_DECIMALS,
    hard_labels,
    listwise_ranking,
    pairwise_preferences,
    rank_order,
    soft_labels,
)
from dars.supervision.recovery import (
    RECOVERY_COLUMNS,
    label_recovery,
    recovery_table,
    true_utility,
)
from dars.supervision.single_shot import SingleShot, draws_to_arrays, single_shot, slot_labels
from dars.supervision.synthetic import SyntheticData, synthetic_observations

__all__ = [
    "ABLATIONS",
    "AGGREGATE_COLUMNS",
    "DEFAULT_DEFINITION",
    "DEFINITIONS",
    "DIAGNOSTICS_SCHEMA",
    "METRIC_COLUMNS",
    "RECOVERY_COLUMNS",
    "TAU",
    "TIE_DECIMALS",
    "Definition",
    "PreparedObservations",
    "QueryModelArrays",
    "SingleShot",
    "SyntheticData",
    "aggregate",
    "bootstrap_ratio",
    "cost_bounds",
    "decoding_risk",
    "diagnostics",
    "diagnostics_table",
    "draws_to_arrays",
    "full_dars",
    "get_ablation",
    "hard_labels",
    "input_only",
    "label_recovery",
    "listwise_ranking",
    "normalise_cost",
    "outcome_instability",
    "output_only",
    "pairwise_preferences",
    "prepare_observations",
    "prepare_once",
    "rank_order",
    "recovery_table",
    "restrict_to_pool",
    "rewrite_risk",
    "single_shot",
    "single_shot_diagnostics",
    "single_vs_da_disagreement",
    "slot_labels",
    "soft_labels",
    "subgrid_dars",
    "subgrid_observations",
    "synthetic_observations",
    "to_arrays",
    "true_utility",
    "variance_components",
    "variance_split",
    "winner_flip_rate",
    "without_risk",
]
