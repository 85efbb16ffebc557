"""The simulated model pool: a litellm custom provider (``dars-sim/<model>``) with a known truth.

Model strings like ``dars-sim/strong-expensive`` go through the whole real path (prompt →
``litellm.acompletion`` → response object with usage → parse → score → cost) without network.
The simulator answers from a ground truth, item-response style. For a model m, an item q of task
type t, and a rewrite r (r = -1 is the original question)::

    logit = a_m · (θ_m,t + τ_m,t,topic(q) − b_q) + γ_m,q + s_q,r + κ_m · s'_m,q,r
    p     = sigmoid(logit)                      probability of a fully correct answer

with b_q the item difficulty (seeded from the query id, shifted by a ``level``/``difficulty``
in the item's meta), γ a model × item interaction (so different models win different queries),
τ a per-topic ability offset when the item's meta names a subject/topic/category/template
(routers can learn it from the text), s and s' the input-side shifts of each rewrite (0 for the
original; small for mc and math, as large as the decode noise for span tasks). Each
decode then draws, deterministically from its ``CallKey``: an unparseable ending with the model's
small rate, else a correct answer with probability p, else (span tasks) a partial-credit answer
with the task's partial rate, else a plausible wrong answer. Token counts depend on the model's
verbosity, the item's length and per-decode noise, so costs differ per model and per call.

The expected score of (dataset, query, model, rewrite) is therefore known exactly:
``(1 - u_m) · (p + (1 - p) · π_t · f1_partial(q))`` (the last term only for span tasks), exposed
by ``SimWorld.true_expected_score`` and ``SimWorld.truth_frame`` for measuring label recovery.

The simulator needs the item (gold, choices, passage) of each call. It never parses prompts: the
decode code registers its items with ``register_items(dataset, items)`` and the ``CallKey`` that
``generate`` attaches to ``dars-sim`` calls (as litellm metadata, never sent to real providers)
names the item. Every random choice is a hash of (world seed, dataset, query_id, model,
rewrite_id, decode_id), so the same key gives the same response in any process; the split is
not part of it (a query belongs to one split) and sampling parameters (temperature) are ignored.

``dars-sim/rewriter`` answers rewrite prompts with a JSON array of ``CallKey.n_rewrites``
template paraphrases that keep every number, choice and passage intact.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from dars.llm.client import SIM_PROVIDER, CallKey, estimate_tokens

if TYPE_CHECKING:
    import polars as pl

    from dars.benchmarks.base import Item
    from dars.config import ModelSpec

REWRITER_ID = "rewriter"
_NORMAL = NormalDist()
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class TaskProfile:
    """How items of one task type behave (all in logit units except where noted).

    ``difficulty_mean``/``difficulty_sd``: item difficulty b_q; ``interaction_sd``: model × item
    term γ; ``rewrite_sd``: shift shared by all models for a rewrite; ``rewrite_model_sd``: the
    per-model part (times the model's ``rewrite_sensitivity``); ``topic_sd``: per (model, topic)
    ability offset; ``level_weight``: difficulty added for the hardest ``meta`` level or
    difficulty (subtracted for the easiest, see ``_item_level``);
    ``partial_rate``: share of non-correct span answers that earn partial credit;
    ``completion_tokens``: mean completion length of a verbosity-1 model on a reference-length
    item (tokens).
    """

    difficulty_mean: float
    difficulty_sd: float
    interaction_sd: float
    rewrite_sd: float
    rewrite_model_sd: float
    topic_sd: float = 0.5
    level_weight: float = 1.0
    partial_rate: float = 0.0
    completion_tokens: float = 250.0


@dataclass(frozen=True)
class SimModel:
    """One simulated model: abilities θ per task type, discrimination a, rewrite sensitivity κ,
    verbosity (completion-length multiplier), rate of unparseable endings, prices (USD per 1M
    tokens) and the default concurrency of its ModelSpec."""

    name: str
    ability: dict[str, float]
    input_price_per_m: float
    output_price_per_m: float
    discrimination: float = 1.0
    rewrite_sensitivity: float = 1.0
    verbosity: float = 1.0
    unparseable_rate: float = 0.002
    max_concurrency: int = 32

    def spec(self, *, max_concurrency: int | None = None) -> ModelSpec:
        from dars.config import ModelSpec

        return ModelSpec(
            name=self.name,
            litellm_model=f"{SIM_PROVIDER}/{self.name}",
            input_price_per_m=self.input_price_per_m,
            output_price_per_m=self.output_price_per_m,
            max_concurrency=max_concurrency or self.max_concurrency,
        )


# Calibrated with scripts in tests/llm (see test_sim_calibration.py) so that, on the demo
# benchmarks under the 5 × 5 train protocol, outcome instability and winner-flip rates land in
# the range the paper reports (seed_figures.yaml, diagnostics).
DEFAULT_PROFILES: dict[str, TaskProfile] = {
    # GPQA-like: hard, strongly model-specific items, decode noise dominates.
    "mc": TaskProfile(
        difficulty_mean=0.3,
        difficulty_sd=1.8,
        interaction_sd=1.8,
        rewrite_sd=0.25,
        rewrite_model_sd=0.25,
        completion_tokens=260.0,
    ),
    # MATH-like: many items every model always solves, so the cheapest model often wins stably.
    "math": TaskProfile(
        difficulty_mean=-2.8,
        difficulty_sd=2.5,
        interaction_sd=0.7,
        rewrite_sd=0.25,
        rewrite_model_sd=0.2,
        completion_tokens=420.0,
    ),
    # DROP-like: mostly easy, but the wording of the question matters as much as the decode.
    "span": TaskProfile(
        difficulty_mean=-5.0,
        difficulty_sd=3.0,
        interaction_sd=0.8,
        rewrite_sd=3.5,
        rewrite_model_sd=1.2,
        partial_rate=0.2,
        completion_tokens=90.0,
    ),
}


def default_sim_models() -> list[SimModel]:
    """The six simulated models of the offline demo pool (order = pool order).

    Per-call costs are well separated for the cheap end (cheap-weak ≈ 3× cheaper than flash),
    so that on items every model solves the cheapest one wins consistently, as in real pools.
    """
    return [
        SimModel(
            name="cheap-weak",
            ability={"mc": -2.0, "math": -0.6, "span": -0.4},
            input_price_per_m=0.04,
            output_price_per_m=0.10,
            discrimination=1.2,
            verbosity=0.8,
            rewrite_sensitivity=1.3,
            unparseable_rate=0.0015,
        ),
        SimModel(
            name="cheap-math",
            ability={"mc": -0.3, "math": 0.9, "span": -0.2},
            input_price_per_m=0.08,
            output_price_per_m=0.28,
            discrimination=1.4,
            verbosity=1.5,
            rewrite_sensitivity=1.0,
            unparseable_rate=0.001,
        ),
        SimModel(
            name="mid",
            ability={"mc": 0.0, "math": 0.3, "span": 0.3},
            input_price_per_m=0.23,
            output_price_per_m=0.40,
            discrimination=1.3,
            verbosity=1.0,
            rewrite_sensitivity=1.0,
            unparseable_rate=0.0008,
        ),
        SimModel(
            name="strong-expensive",
            ability={"mc": 0.8, "math": 1.1, "span": 0.9},
            input_price_per_m=2.50,
            output_price_per_m=10.00,
            discrimination=1.6,
            verbosity=1.1,
            rewrite_sensitivity=0.7,
            unparseable_rate=0.0003,
        ),
        SimModel(
            name="flash",
            ability={"mc": 0.2, "math": 0.5, "span": 0.6},
            input_price_per_m=0.10,
            output_price_per_m=0.40,
            discrimination=1.3,
            verbosity=0.6,
            rewrite_sensitivity=1.1,
            unparseable_rate=0.0008,
        ),
        SimModel(
            name="strong-cheap",
            ability={"mc": 0.5, "math": 0.8, "span": 0.6},
            input_price_per_m=0.28,
            output_price_per_m=0.42,
            discrimination=1.5,
            verbosity=1.2,
            rewrite_sensitivity=0.9,
            unparseable_rate=0.0005,
        ),
    ]


def default_sim_specs(*, max_concurrency: int | None = None) -> list[ModelSpec]:
    """ModelSpecs of ``default_sim_models()`` (``name`` = sim model id, prices set)."""
    return [m.spec(max_concurrency=max_concurrency) for m in default_sim_models()]


def sim_rewriter_spec(*, max_concurrency: int = 32) -> ModelSpec:
    """ModelSpec of the simulated rewriter (priced like a GPT-4o-class model)."""
    from dars.config import ModelSpec

    return ModelSpec(
        name=REWRITER_ID,
        litellm_model=f"{SIM_PROVIDER}/{REWRITER_ID}",
        input_price_per_m=2.5,
        output_price_per_m=10.0,
        max_concurrency=max_concurrency,
    )


class SimError(ValueError):
    """A simulated call cannot be answered (no key, unknown model, unregistered item).

    ``status_code`` tells litellm which HTTP error to report (400 / 404): these are caller bugs,
    so the client fails at once instead of retrying.
    """

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        self.message = message
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# deterministic randomness


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _item_topic(item: Item) -> str | None:
    for k in ("subject", "topic", "category", "domain", "template"):
        v = item.meta.get(k)
        if v:
            return str(v)
    return None


def _item_level(item: Item) -> float:
    """Difficulty offset in [-1, 1] from the item's meta: ``level`` (1-5, as in MATH) or a
    ``difficulty`` in [0, 1] (the demo benchmarks); 0 when absent or not numeric."""
    for k, lo, hi in (("level", 1.0, 5.0), ("difficulty", 0.0, 1.0)):
        v = item.meta.get(k)
        if v is None:
            continue
        m = re.search(r"-?\d+(?:\.\d+)?", str(v))
        if m:
            x = (float(m.group()) - lo) / (hi - lo)
            return max(-1.0, min(1.0, 2.0 * x - 1.0))
    return 0.0


def _item_tokens(item: Item) -> float:
    chars = len(item.question) + len(item.context or "") + sum(len(c) for c in item.choices or ())
    return chars / 4


def _gold_text(item: Item) -> str:
    if item.task_type == "span":
        gold = item.gold
        if isinstance(gold, str):
            return gold
        return str(list(gold)[0])
    return str(item.gold)


_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_STOP = {"that", "this", "with", "from", "were", "have", "their", "which", "there", "they", "than"}


# --------------------------------------------------------------------------------------------
# the world


@dataclass
class SimWorld:
    """Ground truth and response generator of the simulated pool (see module docstring).

    ``models``: the simulated models by id; ``profiles``: task profiles; ``seed``: changes every
    latent draw. Items are registered per dataset with ``register_items``.
    """

    models: dict[str, SimModel] = field(
        default_factory=lambda: {m.name: m for m in default_sim_models()}
    )
    profiles: dict[str, TaskProfile] = field(default_factory=lambda: dict(DEFAULT_PROFILES))
    seed: int = 0

    def __post_init__(self) -> None:
        self._items: dict[tuple[str, str], Item] = {}
        self._partial: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._logits: dict[tuple[str, str, str, int], float] = {}
        self._wrong: dict[tuple[str, str, int], str] = {}
        self._prompt_tokens: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # -- items ---------------------------------------------------------------------------------
    def register_items(self, dataset: str, items: Iterable[Item]) -> int:
        """Make ``items`` answerable under ``dataset``; returns how many are registered now.
        Registering the same item again is a no-op; a different item under a known id raises."""
        with self._lock:
            for it in items:
                k = (dataset, it.query_id)
                old = self._items.get(k)
                if old is not None and old != it:
                    raise ValueError(
                        f"sim world: dataset {dataset!r} query_id {it.query_id!r} is already "
                        "registered with different content"
                    )
                self._items[k] = it
            return sum(1 for d, _ in self._items if d == dataset)

    def item(self, dataset: str, query_id: str) -> Item:
        try:
            return self._items[(dataset, query_id)]
        except KeyError:
            raise SimError(
                400,
                f"dars-sim: no item for dataset {dataset!r}, query_id {query_id!r}; register the "
                "experiment's items first with dars.llm.register_items(dataset, items)",
            ) from None

    def model(self, name: str) -> SimModel:
        name = name.removeprefix(SIM_PROVIDER + "/")
        try:
            return self.models[name]
        except KeyError:
            valid = ", ".join(sorted([*self.models, REWRITER_ID]))
            raise SimError(404, f"dars-sim: unknown model {name!r}; valid: {valid}") from None

    # -- deterministic draws -------------------------------------------------------------------
    def _u(self, *parts: object) -> float:
        """A uniform in (0, 1) that depends only on the seed and ``parts`` (stable across
        processes and Python versions)."""
        raw = "\x1f".join(str(p) for p in (self.seed, *parts)).encode()
        h = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")
        return ((h >> 11) + 0.5) / 2.0**53

    def _bytes(self, *parts: object) -> Iterator[int]:
        """An endless deterministic stream of bytes for ``parts`` (blake2b in counter mode)."""
        raw = "\x1f".join(str(p) for p in (self.seed, *parts)).encode()
        block = 0
        while True:
            yield from hashlib.blake2b(raw + block.to_bytes(4, "big"), digest_size=64).digest()
            block += 1

    def _z(self, *parts: object) -> float:
        return _NORMAL.inv_cdf(self._u(*parts))

    # -- ground truth --------------------------------------------------------------------------
    def logit(self, dataset: str, item: Item, model: str, rewrite_id: int) -> float:
        """The IRT logit of a fully correct answer (see the module docstring)."""
        ck = (dataset, item.query_id, model, rewrite_id)
        hit = self._logits.get(ck)
        if hit is None:
            hit = self._logits[ck] = self._logit(dataset, item, model, rewrite_id)
        return hit

    def _logit(self, dataset: str, item: Item, model: str, rewrite_id: int) -> float:
        m = self.model(model)
        prof = self.profiles[item.task_type]
        qid, t = item.query_id, item.task_type
        b = (
            prof.difficulty_mean
            + prof.difficulty_sd * self._z("b", dataset, qid)
            + prof.level_weight * _item_level(item)
        )
        theta = m.ability[t]
        topic = _item_topic(item)
        if topic is not None:
            theta += prof.topic_sd * self._z("topic", m.name, t, topic)
        z = m.discrimination * (theta - b) + prof.interaction_sd * self._z(
            "g", dataset, qid, m.name
        )
        if rewrite_id >= 0:
            z += prof.rewrite_sd * self._z("rs", dataset, qid, rewrite_id)
            z += (
                prof.rewrite_model_sd
                * m.rewrite_sensitivity
                * self._z("rm", dataset, qid, m.name, rewrite_id)
            )
        return z

    def p_correct(self, dataset: str, query_id: str, model: str, rewrite_id: int) -> float:
        """Probability that one decode is fully correct (before unparseable endings)."""
        return _sigmoid(self.logit(dataset, self.item(dataset, query_id), model, rewrite_id))

    def partial_answer(self, dataset: str, item: Item) -> tuple[str | None, float]:
        """The span partial-credit answer of an item and its DROP F1 against the gold
        ((None, 0.0) when the item has no answer scoring strictly between 0 and 1)."""
        k = (dataset, item.query_id)
        hit = self._partial.get(k)
        if hit is not None:
            return hit
        res: tuple[str | None, float] = (None, 0.0)
        if item.task_type == "span":
            from dars.benchmarks.dropf1 import drop_max_em_f1

            golds = [item.gold] if isinstance(item.gold, str) else list(item.gold)
            gold = _gold_text(item)
            cands: list[str] = []
            if "|" in gold:
                cands.append(gold.split("|")[0].strip())
            gold_words = {w.lower() for w in re.findall(r"\w+", gold)}
            extra = [
                w
                for w in _WORD_RE.findall(item.context or item.question)
                if w.lower() not in gold_words and w.lower() not in _STOP
            ]
            cands += [f"{gold} {w}" for w in extra[:4]] + [f"{gold} overall"]
            for c in cands:
                f1 = drop_max_em_f1(c, golds)[1]
                if 0.0 < f1 < 1.0:
                    res = (c, f1)
                    break
        self._partial[k] = res
        return res

    def true_expected_score(
        self, dataset: str, query_id: str, model: str, rewrite_id: int
    ) -> float:
        """E[score] of one decode of (dataset, query_id, model, rewrite_id) under the benchmark
        scorer: ``(1 - u) · (p + (1 - p) · π · f1_partial)``; ``model`` is the sim model id."""
        item = self.item(dataset, query_id)
        m = self.model(model)
        p = _sigmoid(self.logit(dataset, item, m.name, rewrite_id))
        q = p
        if item.task_type == "span":
            _, f1 = self.partial_answer(dataset, item)
            q = p + (1 - p) * self.profiles["span"].partial_rate * f1
        return (1 - m.unparseable_rate) * q

    def expected_tokens(self, dataset: str, query_id: str, model: str) -> tuple[float, float]:
        """(prompt, completion) tokens expected for one decode: the prompt side is exact for the
        original question's decode prompt (rewrites differ by a few tokens), the completion side
        is the mean of the simulator's length model."""
        from dars.benchmarks.prompts import decode_messages

        item = self.item(dataset, query_id)
        m = self.model(model)
        pk = (dataset, query_id)
        pt = self._prompt_tokens.get(pk)
        if pt is None:
            pt = self._prompt_tokens[pk] = float(estimate_tokens(decode_messages(item)))
        return pt, self._mean_completion(item, m)

    def expected_cost(self, dataset: str, query_id: str, model: str) -> float:
        """Expected USD cost of one decode at the model's default prices."""
        m = self.model(model)
        pt, ct = self.expected_tokens(dataset, query_id, model)
        return (pt * m.input_price_per_m + ct * m.output_price_per_m) / 1e6

    def truth_frame(
        self,
        datasets: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        rewrite_ids: Iterable[int] = range(-1, 5),
    ) -> pl.DataFrame:
        """Ground truth, one row per (dataset, query_id, model, rewrite_id) over the registered
        items: ``p_correct`` (probability of a fully correct decode), ``p_true`` (expected
        score, partial credit and unparseable endings included), ``expected_prompt_tokens``,
        ``expected_completion_tokens`` and ``expected_cost`` (USD, default prices)."""
        import polars as pl

        names = list(models) if models is not None else list(self.models)
        rids = list(rewrite_ids)
        rows: dict[str, list[Any]] = {
            c: []
            for c in (
                "dataset",
                "query_id",
                "task_type",
                "model",
                "rewrite_id",
                "p_correct",
                "p_true",
                "expected_prompt_tokens",
                "expected_completion_tokens",
                "expected_cost",
            )
        }
        keys = sorted(k for k in self._items if datasets is None or k[0] in datasets)
        for dataset, qid in keys:
            item = self._items[(dataset, qid)]
            for name in names:
                m = self.model(name)
                pt, ct = self.expected_tokens(dataset, qid, m.name)
                cost = (pt * m.input_price_per_m + ct * m.output_price_per_m) / 1e6
                for r in rids:
                    p = _sigmoid(self.logit(dataset, item, m.name, r))
                    rows["dataset"].append(dataset)
                    rows["query_id"].append(qid)
                    rows["task_type"].append(item.task_type)
                    rows["model"].append(m.name)
                    rows["rewrite_id"].append(r)
                    rows["p_correct"].append(p)
                    rows["p_true"].append(self.true_expected_score(dataset, qid, m.name, r))
                    rows["expected_prompt_tokens"].append(pt)
                    rows["expected_completion_tokens"].append(ct)
                    rows["expected_cost"].append(cost)
        return pl.DataFrame(
            rows,
            schema={
                "dataset": pl.String,
                "query_id": pl.String,
                "task_type": pl.String,
                "model": pl.String,
                "rewrite_id": pl.Int64,
                "p_correct": pl.Float64,
                "p_true": pl.Float64,
                "expected_prompt_tokens": pl.Float64,
                "expected_completion_tokens": pl.Float64,
                "expected_cost": pl.Float64,
            },
        )

    def simulate_frame(
        self,
        dataset: str,
        query_ids: Sequence[str],
        models: Sequence[str] | None = None,
        rewrite_ids: Iterable[int] = range(5),
        decode_ids: Iterable[int] = range(5),
        max_tokens: int | None = None,
    ) -> pl.DataFrame:
        """The observations a collection run would record, without litellm: one row per
        (dataset, query_id, model, rewrite_id, decode_id) with ``outcome`` (correct / partial /
        wrong / unparseable), ``score`` (what the benchmark scorer gives the response: 1, the
        partial answer's DROP F1, or 0), ``prompt_tokens`` (of the original question's decode
        prompt, see ``expected_tokens``), ``completion_tokens`` (exact: the simulated text's
        length) and ``cost_usd`` at the model's default prices; ``max_tokens`` caps completions
        as the decode budget does. For calibration and fast synthetic data."""
        import polars as pl

        names = [self.model(m).name for m in (models if models is not None else self.models)]
        rids, dids = list(rewrite_ids), list(decode_ids)
        budget = max_tokens if max_tokens is not None else 1 << 30
        cols: dict[str, list[Any]] = {
            c: []
            for c in (
                "dataset",
                "query_id",
                "model",
                "rewrite_id",
                "decode_id",
                "outcome",
                "score",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
            )
        }
        for qid in query_ids:
            item = self.item(dataset, qid)
            partial_f1 = self.partial_answer(dataset, item)[1]
            for name in names:
                m = self.models[name]
                pt = round(self.expected_tokens(dataset, qid, name)[0])
                for r in rids:
                    for d in dids:
                        key = CallKey(dataset, "sim", qid, name, r, d)
                        out = self.outcome(key, name)
                        kind = out[0]
                        ct = math.ceil(len(self.decode_text(key, name, budget, out)) / 4)
                        cols["dataset"].append(dataset)
                        cols["query_id"].append(qid)
                        cols["model"].append(name)
                        cols["rewrite_id"].append(r)
                        cols["decode_id"].append(d)
                        cols["outcome"].append(kind)
                        cols["score"].append(
                            1.0 if kind == "correct" else partial_f1 if kind == "partial" else 0.0
                        )
                        cols["prompt_tokens"].append(pt)
                        cols["completion_tokens"].append(ct)
                        cols["cost_usd"].append(
                            (pt * m.input_price_per_m + ct * m.output_price_per_m) / 1e6
                        )
        return pl.DataFrame(
            cols,
            schema={
                "dataset": pl.String,
                "query_id": pl.String,
                "model": pl.String,
                "rewrite_id": pl.Int64,
                "decode_id": pl.Int64,
                "outcome": pl.String,
                "score": pl.Float64,
                "prompt_tokens": pl.Int64,
                "completion_tokens": pl.Int64,
                "cost_usd": pl.Float64,
            },
        )

    # -- one decode ----------------------------------------------------------------------------
    _LEN_NOISE_SD = 0.2

    def _mean_completion(self, item: Item, m: SimModel) -> float:
        base = self.profiles[item.task_type].completion_tokens
        # Longer items get longer answers, sub-linearly; reference length 80 tokens.
        return m.verbosity * base * (0.6 + 0.4 * math.sqrt(_item_tokens(item) / 80.0))

    def outcome(self, key: CallKey, model: str) -> tuple[str, int]:
        """(kind, target completion tokens) of the decode named by ``key``: kind is ``correct``,
        ``partial`` (span only), ``wrong`` or ``unparseable``."""
        item = self.item(key.dataset, key.query_id)
        m = self.model(model)
        kf = (key.dataset, key.query_id, m.name, key.rewrite_id, key.decode_id)
        noise = math.exp(self._LEN_NOISE_SD * self._z("len", *kf) - self._LEN_NOISE_SD**2 / 2)
        target = max(12, round(self._mean_completion(item, m) * noise))
        if self._u("unparse", *kf) < m.unparseable_rate:
            return "unparseable", target
        p = _sigmoid(self.logit(key.dataset, item, m.name, key.rewrite_id))
        if self._u("correct", *kf) < p:
            return "correct", target
        if item.task_type == "span":
            partial, f1 = self.partial_answer(key.dataset, item)
            if partial is not None and self._u("partial", *kf) < self.profiles["span"].partial_rate:
                return "partial", target
        return "wrong", target

    def decode_text(
        self, key: CallKey, model: str, max_tokens: int, outcome: tuple[str, int] | None = None
    ) -> str:
        """The full response text of one simulated decode (deterministic per key);
        ``outcome`` is ``self.outcome(key, model)`` when the caller already has it."""
        item = self.item(key.dataset, key.query_id)
        m = self.model(model)
        kind, target = outcome if outcome is not None else self.outcome(key, m.name)
        # Stay inside the budget so truncation never changes the outcome drawn above.
        target = max(8, min(target, max_tokens - 8))
        kf = (key.dataset, key.query_id, m.name, key.rewrite_id, key.decode_id)
        if kind == "unparseable":
            ending = _UNPARSEABLE[int(self._u("end", *kf) * len(_UNPARSEABLE))]
        else:
            ending = self._ending(key, item, kind, kf)
        return _pad_reasoning(item.task_type, ending, target * 4, self._bytes("fill", *kf))

    def _ending(self, key: CallKey, item: Item, kind: str, kf: tuple[object, ...]) -> str:
        gold = _gold_text(item)
        t = item.task_type
        if t == "mc":
            n = len(item.choices or ()) or 4
            letters = _LETTERS[:n]
            gold_letter = gold.strip().upper()
            if kind == "correct":
                letter = gold_letter
            else:
                others = [x for x in letters if x != gold_letter] or [gold_letter]
                letter = others[int(self._u("wrong", *kf) * len(others))]
            return (
                f"Comparing the options, option {letter} is the most consistent.\n"
                f"Final Answer: {letter}"
            )
        if t == "math":
            answer = gold if kind == "correct" else _wrong_math(gold, self._u("wrong", *kf))
            return f"Putting the pieces together gives the result.\nFinal Answer: {answer}"
        if kind == "correct":
            answer = gold
        elif kind == "partial":
            answer = self.partial_answer(key.dataset, item)[0] or gold
        else:
            answer = self._wrong_span(key.dataset, item, self._u("wrong", *kf))
        return f"The passage states this directly.\nFinal Answer: {answer}"

    def _wrong_span(self, dataset: str, item: Item, u: float) -> str:
        """A plausible wrong span (a nearby number or another passage word) that scores 0."""
        bucket = int(u * 16)  # 16 variants per item are plenty, and cacheable
        ck = (dataset, item.query_id, bucket)
        hit = self._wrong.get(ck)
        if hit is not None:
            return hit
        from dars.benchmarks.dropf1 import drop_max_em_f1

        golds = [item.gold] if isinstance(item.gold, str) else list(item.gold)
        gold = _gold_text(item)
        cands: list[str] = []
        nums = _NUM_RE.findall(gold)
        if nums:
            base = float(nums[0])
            step = 1 + bucket % 5
            cands += [_fmt_num(base + step), _fmt_num(base - step), _fmt_num(base + 10 * step)]
        words = [w for w in _WORD_RE.findall(item.context or "") if w.lower() not in _STOP]
        if words:
            start = bucket * len(words) // 16
            cands += [words[(start + j) % len(words)] for j in range(min(6, len(words)))]
        cands += ["unknown", "none of them", "17"]
        answer = next((c for c in cands if drop_max_em_f1(c, golds)[1] == 0.0), "unclear")
        self._wrong[ck] = answer
        return answer

    def rewrite_json(self, key: CallKey) -> str:
        """The simulated rewriter's answer: a JSON array of ``key.n_rewrites`` paraphrases."""
        if not key.n_rewrites or key.n_rewrites < 1:
            raise SimError(400, "dars-sim/rewriter needs CallKey.n_rewrites >= 1")
        item = self.item(key.dataset, key.query_id)
        return json.dumps(
            paraphrases(
                item.question,
                key.n_rewrites,
                lambda *p: self._u("rw", key.dataset, *p),
                item.query_id,
            ),
            ensure_ascii=False,
        )

    def respond(
        self, model: str, messages: Sequence[dict[str, Any]], max_tokens: int, key: CallKey
    ) -> tuple[str, int, int]:
        """(text, prompt_tokens, completion_tokens) of a simulated call."""
        name = model.removeprefix(SIM_PROVIDER + "/")
        if name == REWRITER_ID:
            text = self.rewrite_json(key)
        else:
            text = self.decode_text(key, name, max_tokens)
        return text, estimate_tokens(messages), math.ceil(len(text) / 4)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _wrong_math(gold: str, u: float) -> str:
    """A plausible wrong answer: a nearby integer/decimal for numeric golds, else gold + 1
    (never equivalent to the gold expression)."""
    g = gold.strip()
    if re.fullmatch(r"-?\d+", g.replace(",", "")):
        v = int(g.replace(",", ""))
        delta = [1, -1, 2, v if v else 3, -2, 10][int(u * 6)]
        return str(v + delta if delta else v + 1)
    if re.fullmatch(r"-?\d*\.\d+", g):
        return f"{float(g) + [1, -1, 0.5, 2][int(u * 4)]:g}"
    return f"{g}+1"


_FILLER = {
    "mc": [
        "First, restate what the question is really asking.",
        "The key quantity here depends on the underlying mechanism described.",
        "Recall the relevant principle and check whether its assumptions hold.",
        "Several options look similar, so compare them on the critical detail.",
        "One option can be ruled out because it contradicts a basic constraint.",
        "Consider the limiting case to see which behaviour is expected.",
        "The wording suggests a subtle distinction between two concepts.",
        "Checking units and orders of magnitude helps eliminate distractors.",
        "Now weigh the remaining candidates against the stated conditions.",
    ],
    "math": [
        "Let me set up the problem carefully.",
        "Introduce a variable for the unknown quantity and write the given relation.",
        "Simplifying the expression step by step keeps the algebra manageable.",
        "Substituting the known values into the equation gives a smaller problem.",
        "Checking the boundary cases confirms the pattern continues.",
        "Factoring the expression reveals the structure of the solution.",
        "We should double-check the arithmetic in the previous step.",
        "The constraint rules out the negative solution.",
        "Combining the two equations eliminates one of the variables.",
    ],
    "span": [
        "Let me find the relevant part of the passage.",
        "The question refers to a specific event in the passage.",
        "Scanning the passage for the named entities narrows it down.",
        "The relevant sentence mentions the quantity being asked about.",
        "Counting the occurrences carefully avoids an off-by-one mistake.",
        "Cross-checking with the surrounding sentences confirms the reading.",
    ],
}

# Endings without a final-answer line, a box, or a standalone capital letter (the multiple-choice
# scorer's last resort would read one as an option).
_UNPARSEABLE = [
    "More care is needed before committing to a result, since two readings of the question "
    "seem possible.",
    "Unfortunately the reasoning above does not settle the question conclusively.",
    "There seems to be an inconsistency in the derivation, so it is best to start over from the "
    "beginning and reconsider every step",
]


def _pad_reasoning(task_type: str, ending: str, target_chars: int, draws: Iterator[int]) -> str:
    """Reasoning filler sentences (chosen by the key's byte stream ``draws``) until the text
    reaches about ``target_chars``, then ``ending``."""
    pool = _FILLER[task_type]
    parts: list[str] = []
    length = len(ending)
    while True:
        s = pool[next(draws) % len(pool)]
        # Stop at the sentence boundary nearest the target, so lengths are unbiased.
        if length + (len(s) + 1) / 2 > target_chars:
            break
        parts.append(s)
        length += len(s) + 1
    parts.append(ending)
    return "\n".join(parts) if len(parts) <= 2 else " ".join(parts[:-1]) + "\n" + parts[-1]


_PREFIXES = [
    "",
    "Please answer the following. ",
    "Consider this question. ",
    "Here is a question for you. ",
    "Think carefully about this: ",
    "Question to solve: ",
]
_SUFFIXES = ["", " Answer carefully.", " Give a precise answer.", " Take care with the details."]
# (question opening, imperative replacement): applied only at the start of a one-sentence
# question, whose final "?" then becomes "." so the rewrite stays grammatical.
_IMPERATIVES = [
    ("What is ", "Determine "),
    ("How many ", "Count how many "),
    ("Find ", "Compute "),
    ("Which ", "Say which "),
    ("Who ", "Identify who "),
]


def _imperative(q: str) -> str | None:
    if q.count("?") != 1 or not q.endswith("?") or any(c in q[:-1] for c in ".!"):
        return None
    for opening, repl in _IMPERATIVES:
        if q.startswith(opening):
            return repl + q[len(opening) : -1] + "."
    return None


def paraphrases(question: str, n: int, u: Any, query_id: str) -> list[str]:
    """``n`` distinct template rewrites of ``question``: an optional lead-in, an optional
    imperative form of a one-sentence question (``What is …?`` → ``Determine ….``) and an
    optional closing request. Digits, LaTeX, choices and passages are never touched.
    ``u(*parts)`` is the world's uniform draw, used to pick and order the templates."""
    q = question.strip()
    bodies = [q]
    imp = _imperative(q)
    if imp is not None:
        bodies.append(imp)
    variants: list[str] = []
    for body in bodies:
        for pre in _PREFIXES:
            for suf in _SUFFIXES:
                text = (pre + body).rstrip() + suf
                if text != q and text not in variants:
                    variants.append(text)
    variants.sort(key=lambda v: u(query_id, v))
    out = variants[:n]
    k = 2
    while len(out) < n:  # more rewrites asked for than templates: number the extra ones
        out.append(f"{variants[(k - 2) % len(variants)]} (version {k})")
        k += 1
    return out


# --------------------------------------------------------------------------------------------
# process-wide world and the litellm provider

_WORLD = SimWorld()


def sim_world() -> SimWorld:
    """The world the ``dars-sim`` provider answers from in this process."""
    return _WORLD


def set_sim_world(world: SimWorld) -> SimWorld:
    """Replace the process-wide world (e.g. other parameters or seed); returns the old one."""
    global _WORLD
    old, _WORLD = _WORLD, world
    return old


def register_items(dataset: str, items: Iterable[Item]) -> int:
    """Register ``items`` with the process-wide world (idempotent); call before decoding with
    simulated models in every process that decodes."""
    return _WORLD.register_items(dataset, items)


def _key_from_litellm_params(litellm_params: dict[str, Any] | None) -> CallKey:
    meta = (litellm_params or {}).get("metadata") or {}
    raw = meta.get("dars_call_key")
    if not raw:
        raise SimError(400, "dars-sim: the call carries no CallKey; call through dars.llm.generate")
    return CallKey(**raw)


def make_sim_provider() -> Any:
    """A litellm ``CustomLLM`` answering ``dars-sim/<model>`` calls from the process world."""
    from litellm import CustomLLM
    from litellm.llms.custom_llm import CustomLLMError
    from litellm.types.utils import Choices, Message, Usage

    class SimProvider(CustomLLM):
        """litellm custom provider ``dars-sim``: answers from the process-wide ``SimWorld``."""

        def _answer(
            self,
            model: str,
            messages: list,
            optional_params: dict,
            litellm_params: Any,
            model_response: Any,
        ) -> Any:
            try:
                key = _key_from_litellm_params(litellm_params)
                max_tokens = int(optional_params.get("max_tokens") or 512)
                text, pt, ct = _WORLD.respond(model, messages, max_tokens, key)
            except SimError as e:
                raise CustomLLMError(status_code=e.status_code, message=e.message) from None
            model_response.choices = [
                Choices(
                    index=0,
                    finish_reason="stop",
                    message=Message(role="assistant", content=text),
                )
            ]
            model_response.usage = Usage(
                prompt_tokens=pt, completion_tokens=ct, total_tokens=pt + ct
            )
            model_response.model = f"{SIM_PROVIDER}/{model}"
            return model_response

        def completion(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,
            model_response,  # noqa: D102
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            acompletion=None,
            litellm_params=None,
            logger_fn=None,
            headers=None,
            timeout=None,
            client=None,
        ):
            return self._answer(model, messages, optional_params, litellm_params, model_response)

        async def acompletion(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,  # noqa: D102
            model_response,
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            acompletion=None,
            litellm_params=None,
            logger_fn=None,
            headers=None,
            timeout=None,
            client=None,
        ):
            return self._answer(model, messages, optional_params, litellm_params, model_response)

    return SimProvider()
