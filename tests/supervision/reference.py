"""Slow, obvious reference implementations (plain Python loops) and random observation frames.

Everything here works on lists of dicts and the ``statistics`` module so it shares no code path
with the polars/numpy implementation it checks.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

import numpy as np
import polars as pl
from hypothesis import strategies as st

LAM, BETA, DEC = 0.05, 0.2, 9


def random_obs(
    seed: int,
    *,
    n_datasets: int = 1,
    n_queries: int = 3,
    models: tuple[str, ...] = ("a", "b", "c"),
    k: int = 2,
    m: int = 2,
    include_original: bool = False,
    p_drop_obs: float = 0.0,
    p_drop_cell: float = 0.0,
    p_error: float = 0.0,
    discrete: bool = True,
) -> pl.DataFrame:
    """A random observation-store frame; discrete values make ties in scores, costs, utilities."""
    rng = np.random.default_rng(seed)
    rows = []
    rewrites = ([-1] if include_original else []) + list(range(k))
    for d in range(n_datasets):
        for q in range(n_queries):
            for model in models:
                if rng.random() < p_drop_cell:
                    continue
                for r in rewrites:
                    for j in range(m):
                        if rng.random() < p_drop_obs:
                            continue
                        if discrete:
                            score = float(rng.choice([0.0, 0.5, 1.0]))
                            cost = float(rng.choice([0.001, 0.002, 0.004]))
                        else:
                            score = float(rng.random())
                            cost = float(rng.lognormal(-7, 1))
                        status = "error" if rng.random() < p_error else "ok"
                        rows.append(
                            {
                                "dataset": f"d{d}",
                                "split": "train",
                                "query_id": f"q{q}",
                                "model": model,
                                "view": "train",
                                "rewrite_id": r,
                                "decode_id": j,
                                "score": None if status == "error" else score,
                                "cost_usd": None if status == "error" else cost,
                                "status": status,
                            }
                        )
    schema = {
        "dataset": pl.String,
        "split": pl.String,
        "query_id": pl.String,
        "model": pl.String,
        "view": pl.String,
        "rewrite_id": pl.Int32,
        "decode_id": pl.Int32,
        "score": pl.Float64,
        "cost_usd": pl.Float64,
        "status": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


@st.composite
def obs_frames(draw, *, allow_missing_cells: bool = True, min_rows: int = 1):
    """Hypothesis strategy: (frame, models) with ragged grids, failed rows and optional gaps."""
    models = tuple(["a", "b", "c", "d"][: draw(st.integers(1, 4))])
    frame = random_obs(
        draw(st.integers(0, 2**32 - 1)),
        n_datasets=draw(st.integers(1, 2)),
        n_queries=draw(st.integers(1, 4)),
        models=models,
        k=draw(st.integers(1, 3)),
        m=draw(st.integers(1, 3)),
        include_original=draw(st.booleans()),
        p_drop_obs=draw(st.sampled_from([0.0, 0.2])),
        p_drop_cell=draw(st.sampled_from([0.0, 0.2])) if allow_missing_cells else 0.0,
        p_error=draw(st.sampled_from([0.0, 0.1])),
        discrete=draw(st.booleans()),
    )
    ok = frame.filter(pl.col("status") == "ok")
    if ok.height < min_rows:
        frame = random_obs(0, models=models)  # a full grid always has ok rows
    return frame, models


def hand_frame() -> pl.DataFrame:
    """2 queries × 2 models × 2 rewrites × 2 decodes (numbers worked out in test_hand_example).

    Cost range of the dataset: 0.001 .. 0.005, so c_norm = (cost - 0.001) / 0.004.
    """
    rows = [
        # query, model, rewrite, decode, score, cost
        ("q1", "A", 0, 0, 1.0, 0.001),
        ("q1", "A", 0, 1, 1.0, 0.003),
        ("q1", "A", 1, 0, 0.0, 0.002),
        ("q1", "A", 1, 1, 0.5, 0.002),
        ("q1", "B", 0, 0, 1.0, 0.005),
        ("q1", "B", 0, 1, 0.0, 0.005),
        ("q1", "B", 1, 0, 1.0, 0.005),
        ("q1", "B", 1, 1, 0.0, 0.005),
        ("q2", "A", 0, 0, 0.0, 0.001),
        ("q2", "A", 0, 1, 0.0, 0.001),
        ("q2", "A", 1, 0, 0.0, 0.001),
        ("q2", "A", 1, 1, 0.0, 0.001),
        ("q2", "B", 0, 0, 0.0, 0.001),
        ("q2", "B", 0, 1, 0.0, 0.001),
        ("q2", "B", 1, 0, 0.0, 0.001),
        ("q2", "B", 1, 1, 0.0, 0.001),
    ]
    return pl.DataFrame(
        [("d", *r, "ok") for r in rows],
        schema=[
            "dataset",
            "query_id",
            "model",
            "rewrite_id",
            "decode_id",
            "score",
            "cost_usd",
            "status",
        ],
        orient="row",
    )


def paper_example(dataset: str = "d") -> pl.DataFrame:
    """3 queries × 2 models × 2 rewrites × 2 decodes on which the paper's slot definitions of
    the diagnostics (Appendix C.5) and the draw-based variants give different values.

    A costs 0.001 and B 0.003 per call, so c_norm is 0 for A and 1 for B: with λ = 0.05 a slot
    (or draw) has u_A = q_A and u_B = q_B − 0.05. Scores per slot (0,0), (0,1), (1,0), (1,1):

    - q1: A 1 0 1 0, B 1 0 1 0 — both models succeed on the same slots, so every slot's winner is
      A (no flip), but independent draws pair A's 0 with B's 1 a quarter of the time (flip);
    - q2: A 1 1 0 0, B 0 0 1 1 — the winner flips under either index;
    - q3: A 1 1 1 0, B 0.72 everywhere — μ_A − λc̄_A = 0.75 beats 0.67 for B, but A's spread
      (σ_A = 0.5) costs it βσ = 0.1 under β = 0.2, so the DA label is A without the risk term
      (the paper's) and B with it (the draws variant).
    """
    scores = {
        ("q1", "A"): [1.0, 0.0, 1.0, 0.0],
        ("q1", "B"): [1.0, 0.0, 1.0, 0.0],
        ("q2", "A"): [1.0, 1.0, 0.0, 0.0],
        ("q2", "B"): [0.0, 0.0, 1.0, 1.0],
        ("q3", "A"): [1.0, 1.0, 1.0, 0.0],
        ("q3", "B"): [0.72, 0.72, 0.72, 0.72],
    }
    cost = {"A": 0.001, "B": 0.003}
    slots = [(0, 0), (0, 1), (1, 0), (1, 1)]
    rows = [
        (dataset, q, model, r, j, s, cost[model], "ok")
        for (q, model), values in scores.items()
        for (r, j), s in zip(slots, values, strict=True)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "dataset": pl.String,
            "query_id": pl.String,
            "model": pl.String,
            "rewrite_id": pl.Int32,
            "decode_id": pl.Int32,
            "score": pl.Float64,
            "cost_usd": pl.Float64,
            "status": pl.String,
        },
        orient="row",
    )


def any_complete_query(frame: pl.DataFrame, models) -> bool:
    """Does some query have an ok observation for every pool model?"""
    ok = frame.filter(pl.col("status") == "ok")
    per_query = ok.group_by("dataset", "query_id").agg(pl.col("model").n_unique())
    return bool((per_query["model"] == len(models)).any())


# --------------------------------------------------------------------------- references


def ok_rows(
    frame: pl.DataFrame, bounds: dict[str, tuple[float, float]] | None = None
) -> list[dict]:
    """status=ok rows with c_norm = per-dataset min-max normalised cost."""
    rows = [r for r in frame.to_dicts() if r.get("status", "ok") == "ok"]
    if bounds is None:
        bounds = {}
        for r in rows:
            lo, hi = bounds.get(r["dataset"], (math.inf, -math.inf))
            bounds[r["dataset"]] = (min(lo, r["cost_usd"]), max(hi, r["cost_usd"]))
    out = []
    for r in rows:
        lo, hi = bounds[r["dataset"]]
        c = (r["cost_usd"] - lo) / (hi - lo) if hi > lo else 0.0
        out.append({**r, "c_norm": c})
    return out


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def ref_aggregate(rows: list[dict], lam=LAM, beta=BETA, risk="all") -> dict[tuple, dict]:
    """(dataset, query_id, model) -> statistics, from prepared rows (see ok_rows)."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        cells[(r["dataset"], r["query_id"], r["model"])].append(r)
    out = {}
    for key, obs in cells.items():
        scores = [o["score"] for o in obs]
        by_rewrite: dict[int, list[float]] = defaultdict(list)
        for o in obs:
            by_rewrite[o["rewrite_id"]].append(o["score"])
        if risk == "all":
            sigma = _sd(scores)
        elif risk == "rewrite":
            sigma = _sd([statistics.fmean(v) for v in by_rewrite.values()])
        else:
            sigma = statistics.fmean([_sd(v) for v in by_rewrite.values()])
        q_mean = statistics.fmean(scores)
        c_mean = statistics.fmean([o["c_norm"] for o in obs])
        out[key] = {
            "n_obs": len(obs),
            "n_rewrites": len(by_rewrite),
            "q_mean": q_mean,
            "q_std": sigma,
            "c_mean": c_mean,
            "u": q_mean - lam * c_mean - beta * sigma,
        }
    return out


def ref_ablation(rows: list[dict], name: str, lam=LAM, beta=BETA) -> dict[tuple, dict]:
    if name == "full_dars":
        return ref_aggregate(rows, lam, beta)
    if name == "without_risk":
        return ref_aggregate(rows, lam, 0.0)
    if name == "rewrite_risk":
        return ref_aggregate(rows, lam, beta, "rewrite")
    if name == "decoding_risk":
        return ref_aggregate(rows, lam, beta, "decode")
    cell = lambda r: (r["dataset"], r["query_id"], r["model"])  # noqa: E731
    if name == "input_only":
        lowest: dict[tuple, int] = {}
        for r in rows:
            key = (*cell(r), r["rewrite_id"])
            lowest[key] = min(lowest.get(key, 10**9), r["decode_id"])
        kept = [r for r in rows if r["decode_id"] == lowest[(*cell(r), r["rewrite_id"])]]
        return ref_aggregate(kept, lam, beta)
    if name == "output_only":
        chosen: dict[tuple, int] = {}
        for key in {cell(r) for r in rows}:
            ids = {r["rewrite_id"] for r in rows if cell(r) == key}
            chosen[key] = -1 if -1 in ids else min(ids)
        kept = [r for r in rows if r["rewrite_id"] == chosen[cell(r)]]
        return ref_aggregate(kept, lam, beta)
    raise KeyError(name)


def ref_order(us: list[float], cs: list[float]) -> list[int]:
    """Pool indices best-first: higher u, then lower cost, then earlier in the pool."""
    return sorted(range(len(us)), key=lambda i: (-round(us[i], DEC), round(cs[i], DEC), i))


def ref_softmax(us: list[float], tau: float) -> list[float]:
    top = max(us)
    ex = [math.exp((u - top) / tau) for u in us]
    return [e / sum(ex) for e in ex]


def complete_queries(agg: dict[tuple, dict], models) -> dict[tuple, list[dict]]:
    """(dataset, query_id) -> per-model stats in pool order, for queries with every model."""
    queries = {(d, q) for d, q, _ in agg}
    out = {}
    for d, q in sorted(queries):
        if all((d, q, m) in agg for m in models):
            out[(d, q)] = [agg[(d, q, m)] for m in models]
    return out


def ref_variance_components(rows: list[dict]) -> dict[tuple, tuple[float, float, float]]:
    cells: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cells[(r["dataset"], r["query_id"], r["model"])][r["rewrite_id"]].append(r["score"])
    out = {}
    for key, by_rw in cells.items():
        allv = [x for v in by_rw.values() for x in v]
        mean = statistics.fmean(allv)
        between = sum(len(v) * (statistics.fmean(v) - mean) ** 2 for v in by_rw.values()) / len(
            allv
        )
        within = sum(len(v) * statistics.pvariance(v) for v in by_rw.values()) / len(allv)
        out[key] = (between, within, statistics.pvariance(allv))
    return out


def _ref_winner(cells: dict[str, dict], models, lam: float) -> str:
    """The single-shot winner of one observation per model: max q − λ·c_norm."""
    us = [cells[m]["score"] - lam * cells[m]["c_norm"] for m in models]
    return models[ref_order(us, [cells[m]["c_norm"] for m in models])[0]]


def _ref_rates(
    winners: dict[tuple, list[str]], agg: dict[tuple, dict], models
) -> dict[str, dict[str, float]]:
    """Per dataset, from each query's winners at its observation indices: winner flip (share of
    queries with at least two indices whose winners differ; NaN when none has two) and
    disagreement (share of (query, index) winners that differ from the query's label in
    ``agg``, i.e. max u, ties by lower c_mean then pool order)."""
    out: dict[str, dict[str, float]] = {}
    for ds in sorted({d for d, _ in winners}):
        queries = {k: v for k, v in winners.items() if k[0] == ds}
        flips = [len(set(v)) > 1 for v in queries.values() if len(v) >= 2]
        n_diff = n_labels = 0
        for (d, q), labels in queries.items():
            stats = [agg[(d, q, m)] for m in models]
            da = models[ref_order([s["u"] for s in stats], [s["c_mean"] for s in stats])[0]]
            n_diff += sum(label != da for label in labels)
            n_labels += len(labels)
        out[ds] = {
            "winner_flip_rate": sum(flips) / len(flips) if flips else math.nan,
            "single_vs_da_disagreement": n_diff / n_labels,
        }
    return out


def ref_paper_diagnostics(frame: pl.DataFrame, models, lam=LAM) -> dict[str, dict[str, float]]:
    """The paper's (Appendix C.5) winner flip and single-vs-DA disagreement, by plain loops.

    Per dataset: the observation index is the slot (rewrite_id, decode_id) shared by all models;
    only slots where every model has an ok observation count. A slot's winner maximises
    q − λ·c_norm (ties: lower cost, then pool order). A query flips when its complete slots
    (at least two) have more than one winner; disagreement is the share of complete (query,
    slot) pairs whose winner differs from the query's DA label argmax μ − λ·c̄ (no risk term),
    μ and c̄ over all the ok observations of the (query, model) cell. Returns dataset →
    ``{"winner_flip_rate", "single_vs_da_disagreement"}``.
    """
    rows = ok_rows(frame)
    slots: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        slots[(r["dataset"], r["query_id"], r["rewrite_id"], r["decode_id"])][r["model"]] = r
    winners: dict[tuple, list[str]] = defaultdict(list)
    for (d, q, _, _), cells in sorted(slots.items()):
        if len(cells) == len(models):
            winners[(d, q)].append(_ref_winner(cells, models, lam))
    return _ref_rates(winners, ref_aggregate(rows, lam, 0.0), models)


def ref_draws_diagnostics(
    frame: pl.DataFrame, draws: pl.DataFrame, models, lam=LAM, beta=BETA
) -> dict[str, dict[str, float]]:
    """The draw-based winner flip and single-vs-DA disagreement, by plain loops.

    ``draws``: which observation each (draw, query, model) cell drew (the ``rewrite_id`` and
    ``decode_id`` columns of :attr:`dars.supervision.SingleShot.draws`). A draw's winner
    maximises q − λ·c_norm of the drawn observations; a query flips when its draws have more
    than one winner; disagreement is the share of (draw, query) pairs whose winner differs from
    the DARS label argmax μ − λ·c̄ − β·σ. Returns dataset → the two metrics.
    """
    rows = ok_rows(frame)
    obs = {
        (r["dataset"], r["query_id"], r["model"], r["rewrite_id"], r["decode_id"]): r for r in rows
    }
    picked: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for d in draws.to_dicts():
        key = (d["dataset"], d["query_id"], d["model"], d["rewrite_id"], d["decode_id"])
        picked[(d["draw"], d["dataset"], d["query_id"])][d["model"]] = obs[key]
    winners: dict[tuple, list[str]] = defaultdict(list)
    for (_, ds, q), cells in sorted(picked.items()):
        winners[(ds, q)].append(_ref_winner(cells, models, lam))
    return _ref_rates(winners, ref_aggregate(rows, lam, beta), models)
