"""The simulated pool's world: the item-response ground truth and the outcome of every call.

For a model m, an item q of task type t, and a rewrite r (r = -1 is the original question)::

    logit = a_m · (θ_m,t + τ_m,t,topic(q) − b_q) + γ_m,q + s_q,r + κ_m · s'_m,q,r
    p     = sigmoid(logit)                      probability of a fully correct answer

with b_q the item difficulty (seeded from the query id, shifted by a ``level``/``difficulty``
in the item's meta), γ a model × item interaction (so different models win different queries),
τ a per-topic ability offset when the item's meta names a subject/topic/category/template
(routers can learn it from the text), s and s' the input-side shifts of each rewrite (0 for the
original; small for mc and math, as large as the decode noise for span tasks). Each
decode then draws, deterministically from its ``CallKey``: an unparseable ending with the model's
small rate, else a correct answer with probability p, else (items whose task type has a
partial-credit answer for them, span items) a partial-credit answer with the task's partial rate,
else a plausible wrong answer. Token counts depend on the model's verbosity, the item's length and
per-decode noise, so costs differ per model and per call.

The answers themselves (the gold's text, a wrong answer, a partial-credit answer and its score,
the final line) come from the item's task type (:class:`dars.benchmarks.base.TaskType`); the text
around them is written by :mod:`dars.sim.text`. A task type the simulator has no settings for
(one added as a plugin) gets ``GENERIC_PROFILE``, ability 0 in every model and generic wording,
so it is simulated without editing this package.

The expected score of (dataset, query, model, rewrite) is therefore known exactly:
``(1 - u_m) · (p + (1 - p) · π_t · s_partial(q))`` (the last term only for items with a
partial-credit answer, whose score is ``s_partial``), exposed by ``SimWorld.true_expected_score``
and ``SimWorld.truth_frame`` for measuring label recovery.

The world needs the item (gold, choices, passage) of each call and never parses prompts: items
are registered per dataset (``register_items``) and a ``CallKey`` names the item. Every random
choice is a hash of (world seed, dataset, query_id, model, rewrite_id, decode_id), so the same
key gives the same response in any process; the split is not part of it (a query belongs to one
split) and sampling parameters (temperature) are ignored.

The ``rewriter`` model answers rewrite prompts with a JSON array of ``CallKey.n_rewrites``
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

from dars.benchmarks.base import task_type_of
from dars.config import SIM_PREFIX
from dars.llm.types import CallKey, estimate_tokens
from dars.sim.text import ending, pad_reasoning, paraphrases, unparseable_ending

if TYPE_CHECKING:
    import polars as pl

    from dars.benchmarks.base import Item, TaskType
    from dars.config import ModelSpec

#: Model id of the simulated rewriter (``dars-sim/rewriter``).
REWRITER_ID = "rewriter"
_NORMAL = NormalDist()


@dataclass(frozen=True)
class TaskProfile:
    """How items of one task type behave (all in logit units except where noted).

    ``difficulty_mean``/``difficulty_sd``: item difficulty b_q; ``interaction_sd``: model × item
    term γ; ``rewrite_sd``: shift shared by all models for a rewrite; ``rewrite_model_sd``: the
    per-model part (times the model's ``rewrite_sensitivity``); ``topic_sd``: per (model, topic)
    ability offset; ``level_weight``: difficulty added for the hardest ``meta`` level or
    difficulty (subtracted for the easiest, see ``_item_level``);
    ``partial_rate``: share of non-correct answers that earn partial credit (on items whose task
    type has a partial-credit answer for them);
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
    """One simulated model: abilities θ per task type (0 for a task type not listed),
    discrimination a, rewrite sensitivity κ, verbosity (completion-length multiplier), rate of
    unparseable endings, prices (USD per 1M tokens) and the default concurrency of its
    ModelSpec."""

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
            litellm_model=f"{SIM_PREFIX}{self.name}",
            input_price_per_m=self.input_price_per_m,
            output_price_per_m=self.output_price_per_m,
            max_concurrency=max_concurrency or self.max_concurrency,
        )


# Calibrated with scripts in tests/sim (see test_calibration.py) so that, on the demo
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


#: Profile of a task type ``DEFAULT_PROFILES`` (or a world's ``profiles``) does not list, e.g. one
#: added as a plugin: items of middling difficulty with model-specific and rewrite-sensitive
#: outcomes between the mc and math settings, span's partial rate (used only when the task type
#: has partial-credit answers), the default completion length.
GENERIC_PROFILE = TaskProfile(
    difficulty_mean=0.0,
    difficulty_sd=1.5,
    interaction_sd=1.0,
    rewrite_sd=0.5,
    rewrite_model_sd=0.3,
    partial_rate=0.2,
)


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


# --------------------------------------------------------------------------------------------
# the world


@dataclass
class SimWorld:
    """Ground truth and response generator of the simulated pool (see module docstring).

    ``models``: the simulated models by id; ``profiles``: task profiles by task type (a task
    type not listed gets ``GENERIC_PROFILE``); ``seed``: changes every latent draw. Items are
    registered per dataset with ``register_items``.
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
                "experiment's items first with dars.sim.register_items(dataset, items)",
            ) from None

    def model(self, name: str) -> SimModel:
        name = name.removeprefix(SIM_PREFIX)
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

    def profile(self, task_type: str) -> TaskProfile:
        """The profile of items of ``task_type`` (``GENERIC_PROFILE`` when not listed)."""
        return self.profiles.get(task_type, GENERIC_PROFILE)

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
        prof = self.profile(item.task_type)
        qid, t = item.query_id, item.task_type
        b = (
            prof.difficulty_mean
            + prof.difficulty_sd * self._z("b", dataset, qid)
            + prof.level_weight * _item_level(item)
        )
        theta = m.ability.get(t, 0.0)
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
        """The partial-credit answer of an item and its score ((None, 0.0) when its task type
        has none for it): the task type's ``partial_answer``, cached per (dataset, query)."""
        k = (dataset, item.query_id)
        hit = self._partial.get(k)
        if hit is None:
            hit = self._partial[k] = task_type_of(item).partial_answer(item)
        return hit

    def true_expected_score(
        self, dataset: str, query_id: str, model: str, rewrite_id: int
    ) -> float:
        """E[score] of one decode of (dataset, query_id, model, rewrite_id) under the benchmark
        scorer: ``(1 - u) · (p + (1 - p) · π · s_partial)``; ``model`` is the sim model id."""
        item = self.item(dataset, query_id)
        m = self.model(model)
        p = _sigmoid(self.logit(dataset, item, m.name, rewrite_id))
        q = p
        partial, s_partial = self.partial_answer(dataset, item)
        if partial is not None:
            q = p + (1 - p) * self.profile(item.task_type).partial_rate * s_partial
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
        partial answer's score, or 0), ``prompt_tokens`` (of the original question's decode
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
        base = self.profile(item.task_type).completion_tokens
        # Longer items get longer answers, sub-linearly; reference length 80 tokens.
        return m.verbosity * base * (0.6 + 0.4 * math.sqrt(_item_tokens(item) / 80.0))

    def outcome(self, key: CallKey, model: str) -> tuple[str, int]:
        """(kind, target completion tokens) of the decode named by ``key``: kind is ``correct``,
        ``partial`` (only items with a partial-credit answer), ``wrong`` or ``unparseable``."""
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
        partial = self.partial_answer(key.dataset, item)[0]
        if (
            partial is not None
            and self._u("partial", *kf) < self.profile(item.task_type).partial_rate
        ):
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
            last = unparseable_ending(self._u("end", *kf))
        else:
            task = task_type_of(item)
            last = ending(task, self._answer(task, key.dataset, item, kind, self._u("wrong", *kf)))
        return pad_reasoning(item.task_type, last, target * 4, self._bytes("fill", *kf))

    def _answer(self, task: TaskType, dataset: str, item: Item, kind: str, u: float) -> str:
        """The answer a decode of outcome ``kind`` (``correct``, ``partial`` or ``wrong``) gives,
        from the item's task type ``task``: the gold's text, the partial-credit answer (the gold
        when there is none), or the wrong answer the decode's uniform draw ``u`` picks."""
        if kind == "correct":
            return task.gold_text(item)
        if kind == "partial":
            return self.partial_answer(dataset, item)[0] or task.gold_text(item)
        return task.wrong_answer(item, u)

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
        name = model.removeprefix(SIM_PREFIX)
        if name == REWRITER_ID:
            text = self.rewrite_json(key)
        else:
            text = self.decode_text(key, name, max_tokens)
        return text, estimate_tokens(messages), math.ceil(len(text) / 4)
