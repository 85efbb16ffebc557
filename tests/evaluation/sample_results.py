"""Synthetic result tables with the experiments' schemas, for the report tests.

``make_results()`` gives every table the registered experiments declare, filled with seeded
random numbers: three demo datasets, two router families (knn, mirt), three pool models.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dars.supervision.diagnostics import METRICS, SINGLE_SHOT_METRICS

DATASETS = ("demo_mc", "demo_math", "demo_span")
VIEWS = ("test_rewrite", "test_decode")
FAMILIES = ("knn", "mirt")
MODELS = ("cheap-weak", "mid", "strong-expensive")
#: The figures a report of all these results draws.
EXPECTED_FIGURES = {
    "fig2a_instability",
    "fig2b_variance",
    "fig2c_single_shot",
    "fig4a_sample_efficiency",
    "fig4b_pareto_demo_mc",
    "fig4b_pareto_demo_math",
    "fig4b_pareto_demo_span",
    "fig4c_beta",
}


# ------------------------------------------------------------------------------------------------
# synthetic results with the contract's schemas
# ------------------------------------------------------------------------------------------------
def _u(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.3, 0.9))


def make_results(seed: int = 0) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    main, ablation, dist, se, beta, pareto, budget = [], [], [], [], [], [], []
    for d in DATASETS:
        for v in VIEWS:
            for ref in ("best_fixed", "oracle", "random"):
                main.append(
                    dict(
                        dataset=d,
                        view=v,
                        family=ref,
                        supervision=ref,
                        n_draws=1,
                        U=_u(rng),
                        U_std=None,
                        U_low=None,
                        U_high=None,
                        Q=_u(rng),
                        C=_u(rng),
                        best_model="mid" if ref == "best_fixed" else None,
                    )
                )
            for f in FAMILIES:
                main.append(
                    dict(
                        dataset=d,
                        view=v,
                        family=f,
                        supervision="single_shot",
                        n_draws=20,
                        U=_u(rng),
                        U_std=float(rng.uniform(0.01, 0.05)),
                        U_low=None,
                        U_high=None,
                        Q=_u(rng),
                        C=_u(rng),
                        best_model=None,
                    )
                )
                u = _u(rng)
                main.append(
                    dict(
                        dataset=d,
                        view=v,
                        family=f,
                        supervision="dars",
                        n_draws=1,
                        U=u,
                        U_std=None,
                        U_low=u - 0.05,
                        U_high=u + 0.05,
                        Q=_u(rng),
                        C=_u(rng),
                        best_model=None,
                    )
                )
                for draw in range(20):
                    dist.append(
                        dict(
                            dataset=d, view=v, family=f, draw=draw, U=_u(rng), Q=_u(rng), C=_u(rng)
                        )
                    )
                for k, m in ((1, 1), (1, 5), (5, 1), (5, 5)):
                    u = _u(rng)
                    se.append(
                        dict(
                            dataset=d,
                            view=v,
                            family=f,
                            k=k,
                            m=m,
                            n_obs=k * m,
                            U=u,
                            U_low=u - 0.1,
                            U_high=u + 0.1,
                            Q=_u(rng),
                            C=_u(rng),
                        )
                    )
                for b in (0.0, 0.2, 1.0):
                    u = _u(rng)
                    beta.append(
                        dict(
                            dataset=d,
                            view=v,
                            family=f,
                            beta=b,
                            U=u,
                            U_low=u - 0.1,
                            U_high=u + 0.1,
                            Q=_u(rng),
                            C=_u(rng),
                        )
                    )
                for supervision in ("single_shot", "dars"):
                    for lam in (0.0, 0.05, 0.5):
                        pareto.append(
                            dict(
                                dataset=d,
                                view=v,
                                family=f,
                                supervision=supervision,
                                lam=lam,
                                model=None,
                                n_draws=20 if supervision == "single_shot" else 1,
                                U=_u(rng),
                                Q=_u(rng),
                                C=_u(rng),
                                Q_std=0.01,
                                C_std=0.01,
                            )
                        )
                    for b in (0.1, 0.5):
                        budget.append(
                            dict(
                                dataset=d,
                                view=v,
                                family=f,
                                supervision=supervision,
                                budget=b,
                                lam=0.05 if b == 0.5 else None,
                                Q=_u(rng) if b == 0.5 else None,
                                C=_u(rng) if b == 0.5 else None,
                            )
                        )
            for model in MODELS:
                pareto.append(
                    dict(
                        dataset=d,
                        view=v,
                        family="fixed",
                        supervision="fixed",
                        lam=None,
                        model=model,
                        n_draws=1,
                        U=_u(rng),
                        Q=_u(rng),
                        C=_u(rng),
                        Q_std=None,
                        C_std=None,
                    )
                )
            supervisions = (
                "single_shot",
                "input_only",
                "output_only",
                "without_risk",
                "rewrite_risk",
                "decoding_risk",
                "full_dars",
            )
            for supervision in supervisions:
                ablation.append(
                    dict(
                        dataset=d,
                        view=v,
                        family="mirt",
                        supervision=supervision,
                        n_draws=20 if supervision == "single_shot" else 1,
                        U=_u(rng),
                        U_std=0.02 if supervision == "single_shot" else None,
                        U_low=None,
                        U_high=None,
                        Q=_u(rng),
                        C=_u(rng),
                    )
                )
    # Winner flip and disagreement under both definitions (paper's the default), as the
    # supervise stage writes them.
    definitions = dict.fromkeys(SINGLE_SHOT_METRICS, ("paper", "draws"))
    diagnostics = [
        dict(
            dataset=d,
            metric=m,
            definition=definition,
            is_default=j == 0,
            value=0.5 + 0.01 * i + 0.1 * j,
            ci_low=0.4 + 0.01 * i + 0.1 * j,
            ci_high=0.6 + 0.01 * i + 0.1 * j,
            n_queries=80,
            n_units=480,
        )
        for d in DATASETS
        for i, m in enumerate(METRICS)
        for j, definition in enumerate(definitions.get(m, (None,)))
    ]
    recovery = [
        dict(
            dataset=d,
            supervision=s,
            k=k,
            m=m,
            recovery=_u(rng),
            ci_low=0.1,
            ci_high=0.95,
            regret=0.0123,
            n_queries=80,
            n_labels=80,
        )
        for d in DATASETS
        for s, k, m in (
            ("single_shot", None, None),
            ("full_dars", None, None),
            ("dars_k1_m5", 1, 5),
        )
    ]
    rewrite_validity = [
        dict(
            dataset=d,
            split=s,
            records=80,
            rewrites=400,
            complete=1.0,
            orig_dup=0.0,
            rew_dup=0.0,
            sim_mean=0.91234,
            sim_p05=0.8,
            num_preserved=1.0,
            struct_pass=1.0,
            review_flag=0.0,
        )
        for d in DATASETS
        for s in ("train", "test")
    ]
    scoring_validity = [
        dict(
            dataset=d,
            split=s,
            rows=12000,
            ok_rows=11990,
            parse_success=0.9991,
            finite=1.0,
            in_unit_interval=1.0,
            score_type=1.0,
            rescored=11990,
            rescore_agreement=1.0,
            rescore_diffs=0,
            duplicate_keys=0,
        )
        for d in DATASETS
        for s in ("train", "test")
    ]
    schema_overrides = {
        "diagnostics": {"definition": pl.String},
        "recovery": {"k": pl.Int32, "m": pl.Int32},
        "pareto": {"lam": pl.Float64, "model": pl.String},
        "pareto_budget": {"lam": pl.Float64, "Q": pl.Float64, "C": pl.Float64},
        "main": {
            "U_std": pl.Float64,
            "U_low": pl.Float64,
            "U_high": pl.Float64,
            "best_model": pl.String,
        },
        "ablation": {"U_std": pl.Float64, "U_low": pl.Float64, "U_high": pl.Float64},
    }
    tables = dict(
        main=main,
        ablation=ablation,
        diagnostics=diagnostics,
        single_shot_distribution=dist,
        recovery=recovery,
        sample_efficiency=se,
        pareto=pareto,
        pareto_budget=budget,
        beta=beta,
        rewrite_validity=rewrite_validity,
        scoring_validity=scoring_validity,
    )
    out = {
        name: pl.DataFrame(
            rows, schema_overrides=schema_overrides.get(name), infer_schema_length=None
        )
        for name, rows in tables.items()
    }
    out["dars_gain"] = _gains(out["main"])
    return out


def _gains(main: pl.DataFrame) -> pl.DataFrame:
    """``dars_gain`` rows consistent with ``main``: each family's single-shot and DARS cells, the
    gain their difference with a ±0.01 interval, the knn rows under both presets."""
    from dars.evaluation.experiments.main import DARS_GAIN_COLUMNS

    single = main.filter(pl.col("supervision") == "single_shot").select(
        "dataset", "view", "family", "n_draws", single_U="U", single_std="U_std"
    )
    dars = main.filter(pl.col("supervision") == "dars").select(
        "dataset", "view", "family", dars_U="U", dars_low="U_low", dars_high="U_high"
    )
    rows = single.join(dars, on=["dataset", "view", "family"]).with_columns(
        pl.lit("tuned").alias("preset"), (pl.col("dars_U") - pl.col("single_U")).alias("gain")
    )
    paper = rows.filter(pl.col("family") == "knn").with_columns(
        pl.lit("knn-paper").alias("family"), pl.lit("paper").alias("preset")
    )
    return (
        pl.concat([rows, paper])
        .with_columns(
            (pl.col("gain") - 0.01).alias("gain_low"), (pl.col("gain") + 0.01).alias("gain_high")
        )
        .select(list(DARS_GAIN_COLUMNS))
        .cast(DARS_GAIN_COLUMNS)
    )
