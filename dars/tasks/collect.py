"""The collect stage: rewrites and the observation matrix, one Prefect task per partition shard.

The work of a task is one of two coroutines, wrapped by the ``@task`` functions at the end:

* :func:`rewrite_shard` asks the rewriter for the rewrites of every query of one
  (dataset, split, shard) that does not have them yet, checks their validity and stores them;
* :func:`decode_shard` runs every planned observation key of one (dataset, split, model, shard)
  that is not stored with status ok yet, scores the responses and stores them.

Both resume: keys already stored ok are never requested again (a rerun never re-bills a completed
call), and rows are checkpointed to the store every ``CHECKPOINT_ROWS`` completions or
``CHECKPOINT_SECONDS``, so a killed process loses at most one checkpoint of work. Calls go through
``dars.llm.generate``, the same path for real providers and the simulated pool.

The flows ask :func:`plan_rewrites_task` / :func:`plan_decodes_task` which shards still have
work (they read the store; flows never do), and, for a simulated pool, :func:`truth_task` stores
the simulator's ground truth for label recovery (:mod:`dars.storage.truth`), so the supervise
stage never needs the simulator. No task is cached: the store is the cache (see ``_CACHE``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.benchmarks.base import Item
from dars.benchmarks.loading import benchmark_for, items_by_id, load_splits
from dars.benchmarks.prompts import parse_rewrites
from dars.benchmarks.rewrite_checks import check_rewrites
from dars.config import Experiment
from dars.llm import CallKey, GenParams, LLMCallError, generate
from dars.llm.loop import run_sync
from dars.plan import KEY, build_plan, expected_rewrites, status
from dars.sim import SimWorld, register_items, simulated_truth
from dars.storage import (
    done_keys,
    read_observations,
    rewrite_keys,
    scan_observations,
    scan_rewrites,
    write_observations,
    write_rewrites,
)
from dars.storage.truth import remove_truth, write_truth
from dars.tasks.failures import ExpectedFailure, quiet_expected_failures

# Failed shards are reported in one line each, not by Prefect tracebacks (see the module).
quiet_expected_failures()

CHECKPOINT_ROWS = 200
CHECKPOINT_SECONDS = 5.0
# The rewriter is asked again this many times when its answer cannot be parsed into n rewrites.
REWRITE_PARSE_ATTEMPTS = 3


# --------------------------------------------------------------------------------------------
# progress and spend, shared by every shard running in this process


@dataclass
class CollectProgress:
    """Counters of one process's collection, for progress bars and the spend cap."""

    planned: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    spend_cap_usd: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    listeners: list[Callable[[CollectProgress], None]] = field(default_factory=list, repr=False)
    _failed_keys: set[Hashable] = field(default_factory=set, repr=False)

    def add(
        self,
        *,
        planned: int = 0,
        skipped: int = 0,
        ok: int = 0,
        failed: int = 0,
        cost: float = 0.0,
        key: Hashable | None = None,
    ) -> None:
        """Count calls. With ``key`` (the call's observation key), ``failed`` counts keys that
        END failed: a key counts once however often it fails, and no more once it succeeds (a
        Prefect retry of its shard); without, every failure counts."""
        with self._lock:
            self.planned += planned
            self.skipped += skipped
            self.ok += ok
            self.cost_usd += cost
            if key is None:
                self.failed += failed
            elif failed and key not in self._failed_keys:
                self._failed_keys.add(key)
                self.failed += 1
            elif ok and key in self._failed_keys:
                self._failed_keys.discard(key)
                self.failed -= 1
        for fn in list(self.listeners):
            fn(self)

    def over_budget(self) -> bool:
        return self.spend_cap_usd is not None and self.cost_usd >= self.spend_cap_usd


_PROGRESS = CollectProgress()


def progress() -> CollectProgress:
    """The process-wide collection counters (the CLI attaches its progress bar here)."""
    return _PROGRESS


def reset_progress(spend_cap_usd: float | None = None) -> CollectProgress:
    """Start fresh counters (a new flow run); listeners are kept."""
    global _PROGRESS
    listeners = _PROGRESS.listeners
    _PROGRESS = CollectProgress(spend_cap_usd=spend_cap_usd, listeners=listeners)
    return _PROGRESS


@dataclass
class ShardReport:
    """What one shard task did: how many keys were planned, already done, run ok or failed."""

    stage: str
    dataset: str
    split: str
    model: str | None
    shard: int
    planned: int = 0
    already_done: int = 0
    ok: int = 0
    failed: int = 0
    # Failed keys whose last error was transient (429, 5xx, timeout, connection, malformed):
    # only these make a shard retry worthwhile; an auth or bad-request failure repeats as is.
    transient_failed: int = 0
    not_run: int = 0  # blocked: spend cap reached or a rewrite missing
    # Failed keys by cause ("server_error 500", "timeout", "auth 401", …): the one-line report.
    errors: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.not_run == 0

    def count_error(self, cause: str, n: int = 1) -> None:
        self.errors[cause] = self.errors.get(cause, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def error_cause(err: LLMCallError) -> str:
    """The failure class of a call and its HTTP status, e.g. "server_error 500", "timeout"."""
    return f"{err.kind} {err.status_code}" if err.status_code else err.kind


class ShardIncomplete(ExpectedFailure):
    """Some keys of a shard failed or could not run; a rerun fills exactly those."""

    def __init__(self, report: ShardReport) -> None:
        self.report = report
        who = f"{report.dataset}/{report.split}/{report.model or 'rewrites'}/shard {report.shard}"
        causes = [f"{n} × {c}" for c, n in sorted(report.errors.items(), key=lambda x: -x[1])]
        super().__init__(
            f"{who}: {report.failed} failed, {report.not_run} not run "
            f"({'; '.join(causes + report.notes[:3]) or 'see the store'}); "
            "`dars rerun --failed` fills only those keys"
        )

    def __reduce__(self) -> tuple[type[ShardIncomplete], tuple[ShardReport]]:
        # The default reduction re-calls __init__ with the message string; process-pool workers
        # and Prefect's result store pickle this exception, so rebuild it from the report.
        return (type(self), (self.report,))


# --------------------------------------------------------------------------------------------
# helpers


def prompt_sha256(messages: Sequence[dict[str, str]]) -> str:
    """sha256 of the rendered chat messages (what the provider receives)."""
    blob = json.dumps(list(messages), sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _shard_queries(
    exp: Experiment, splits: dict, dataset: str, split: str, shard: int
) -> list[Item]:
    items = splits[dataset][split]
    lo = shard * exp.shard_size
    return items[lo : lo + exp.shard_size]


async def _run_all(coros: Sequence[Coroutine[Any, Any, Any]]) -> None:
    """Await every coroutine concurrently; if one raises (or the caller is cancelled), cancel
    the others before re-raising. Plain ``gather`` would leave them running on the shared LLM
    loop after the shard has failed, still making (billed) calls that a retry repeats."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _gated(gate: asyncio.Semaphore, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` holding ``gate``. A shard admits only the model's ``max_concurrency`` calls at
    a time (the client would make the rest wait anyway), so the spend-cap check before each call
    sees the cost of the calls that finished: without the gate every key of a shard would pass
    the check at once, before any cost is known, and the cap would only stop the next shard."""
    try:
        async with gate:
            return await coro
    finally:
        coro.close()  # cancelled while waiting for the gate: never started, nothing to warn about


class _Checkpointer:
    """Buffers rows and writes them to the store every N rows or T seconds (and at the end)."""

    def __init__(self, write: Callable[[list[dict]], Any], rows: int, seconds: float) -> None:
        self._write, self._rows, self._seconds = write, rows, seconds
        self._buf: list[dict] = []
        self._last = time.monotonic()

    def add(self, row: dict) -> None:
        self._buf.append(row)
        if len(self._buf) >= self._rows or time.monotonic() - self._last >= self._seconds:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._write(self._buf)
            self._buf = []
        self._last = time.monotonic()


# --------------------------------------------------------------------------------------------
# rewrites


async def rewrite_shard(
    exp: Experiment,
    dataset: str,
    split: str,
    shard: int,
    *,
    run_id: str,
    similarity: Callable[[list[str], list[str]], list[float]] | None = None,
) -> ShardReport:
    """Fill the missing rewrites of one (dataset, split, shard).

    For every query of the shard whose planned rewrite ids are not all stored, the rewriter is
    asked once for the whole set (``rewrite_messages(item, n)``), the JSON answer is parsed (asked
    again up to ``REWRITE_PARSE_ATTEMPTS`` times when it cannot be), validity columns are computed
    (``check_rewrites``; ``similarity(originals, rewrites)`` gives embedding similarities when
    provided) and the rows are stored. Returns a report; queries that failed are counted there.
    """
    t0 = time.monotonic()
    report = ShardReport("rewrite", dataset, split, None, shard)
    splits = load_splits(exp)
    bench = benchmark_for(exp.benchmark(dataset))
    register_items(dataset, [it for items in splits[dataset].values() for it in items])
    plan = expected_rewrites(exp, splits).filter(
        (pl.col("dataset") == dataset) & (pl.col("split") == split) & (pl.col("shard") == shard)
    )
    report.planned = plan.height
    if plan.height == 0:
        return report
    have = rewrite_keys(exp.root, dataset, split)
    todo = plan.join(have, on=["dataset", "split", "query_id", "rewrite_id"], how="anti")
    report.already_done = plan.height - todo.height
    by_id = items_by_id(splits[dataset])
    rewriter = exp.rewriter
    assert rewriter is not None  # the config requires one when a benchmark is collected
    params = GenParams(
        max_tokens=1024,
        temperature=exp.protocol.temperature,
        top_p=exp.protocol.top_p,
        timeout_s=exp.request_timeout_s,
        max_retries=exp.max_retries,
    )
    prog = progress()
    needed = todo.group_by("query_id", maintain_order=True).agg(pl.col("rewrite_id"))

    async def one(qid: str, rewrite_ids: list[int]) -> tuple[Item, list[str], list[int]] | None:
        item = by_id[qid]
        n_total = int(plan.filter(pl.col("query_id") == qid).height)
        messages = bench.rewrite_messages(item, n_total)
        last_err = ""
        for attempt in range(REWRITE_PARSE_ATTEMPTS):
            if prog.over_budget():
                report.not_run += len(rewrite_ids)
                report.notes.append("spend cap reached")
                return None
            key = CallKey(dataset, split, qid, rewriter.name, -1, attempt, n_rewrites=n_total)
            try:
                gen = await generate(rewriter, messages, params, key=key)
            except LLMCallError as err:
                report.failed += len(rewrite_ids)
                report.count_error(error_cause(err), len(rewrite_ids))
                if err.transient:
                    report.transient_failed += len(rewrite_ids)
                report.notes.append(f"{qid}: {err}")
                prog.add(failed=1, key=("rewrite", dataset, split, qid))
                return None
            report.cost_usd += gen.cost_usd
            prog.add(ok=1, cost=gen.cost_usd, key=("rewrite", dataset, split, qid))
            try:
                texts = parse_rewrites(gen.text, n_total)
                break
            except ValueError as err:
                last_err = str(err)
        else:
            report.failed += len(rewrite_ids)
            report.notes.append(f"{qid}: unparseable rewriter answer: {last_err[:200]}")
            return None
        return item, texts, rewrite_ids

    results: list[tuple[Item, list[str], list[int]] | None] = [None] * needed.height

    async def keep(i: int, qid: str, rewrite_ids: list[int]) -> None:
        results[i] = await one(qid, rewrite_ids)

    gate = asyncio.Semaphore(rewriter.max_concurrency)
    await _run_all([_gated(gate, keep(i, q, ids)) for i, (q, ids) in enumerate(needed.iter_rows())])
    done = [r for r in results if r is not None]
    # One batched similarity call for the whole shard: encoding query by query is ~100× slower.
    originals = [item.question for item, texts, _ in done for _ in texts]
    rewritten = [t for _, texts, _ in done for t in texts]
    sims = similarity(originals, rewritten) if similarity and rewritten else None
    rows, pos, now = [], 0, datetime.now(UTC)
    for item, texts, rewrite_ids in done:
        sub = sims[pos : pos + len(texts)] if sims is not None else None
        pos += len(texts)
        checks = check_rewrites(item, texts, sub)
        rows += [
            {
                "dataset": dataset,
                "split": split,
                "query_id": item.query_id,
                "rewrite_id": rid,
                "text": texts[rid],
                "rewriter": rewriter.name,
                **checks[rid],
                "created_at": now,
            }
            for rid in rewrite_ids
        ]
    if rows:
        write_rewrites(exp.root, rows, shard=shard)
    report.ok = len(rows)
    report.wall_s = time.monotonic() - t0
    return report


# --------------------------------------------------------------------------------------------
# decodes


async def decode_shard(
    exp: Experiment,
    dataset: str,
    split: str,
    model: str,
    shard: int,
    *,
    run_id: str,
    checkpoint_rows: int = CHECKPOINT_ROWS,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> ShardReport:
    """Run, score and store every missing observation key of one (dataset, split, model, shard).

    Keys come from ``dars.plan.build_plan``; keys stored ok anywhere in the partition are skipped.
    Rewrite texts come from the rewrite store (run the rewrite stage first); a key whose rewrite is
    missing is not run and is counted in ``not_run``. Calls run concurrently, bounded by the
    model's limits in the client; each result (ok or error) becomes one store row.
    """
    t0 = time.monotonic()
    report = ShardReport("decode", dataset, split, model, shard)
    splits = load_splits(exp)
    spec = exp.pool.get(model)
    bench = benchmark_for(exp.benchmark(dataset))
    register_items(dataset, [it for items in splits[dataset].values() for it in items])
    shard_ids = [it.query_id for it in _shard_queries(exp, splits, dataset, split, shard)]
    if not shard_ids:
        return report
    # Plan only this shard's queries: cheap even for large experiments.
    sub = {d: {s: [] for s in ("train", "test")} for d in splits}
    sub[dataset][split] = splits[dataset][split]
    plan = build_plan(exp, sub).filter(
        (pl.col("dataset") == dataset)
        & (pl.col("split") == split)
        & (pl.col("model") == model)
        & (pl.col("shard") == shard)
    )
    report.planned = plan.height
    done = done_keys(exp.root, dataset, split, model)
    todo = plan.join(done, on=list(done.columns), how="anti")
    report.already_done = plan.height - todo.height
    prog = progress()
    prog.add(planned=plan.height, skipped=report.already_done)
    if todo.height == 0:
        report.wall_s = time.monotonic() - t0
        return report

    rewrite_text: dict[tuple[str, int], str] = {}
    if todo.filter(pl.col("rewrite_id") >= 0).height:
        stored = (
            scan_rewrites(exp.root, dataset=dataset, split=split)
            .filter(pl.col("query_id").is_in(shard_ids))
            .select("query_id", "rewrite_id", "text")
            .collect()
        )
        rewrite_text = {(q, r): t for q, r, t in stored.iter_rows()}
    by_id = items_by_id(splits[dataset])
    params = GenParams.for_benchmark(exp, dataset)
    checkpoint = _Checkpointer(
        lambda rows: write_observations(exp.root, rows, shard=shard),
        checkpoint_rows,
        checkpoint_seconds,
    )
    lock = asyncio.Lock()
    gate = asyncio.Semaphore(spec.max_concurrency)

    async def one(qid: str, view: str, rid: int, did: int) -> None:
        item = by_id[qid]
        if rid >= 0 and (qid, rid) not in rewrite_text:
            report.not_run += 1
            if len(report.notes) < 5:
                report.notes.append(f"rewrite {rid} of {qid} missing: run the rewrite stage")
            return
        if prog.over_budget():
            report.not_run += 1
            if "spend cap reached" not in report.notes:
                report.notes.append("spend cap reached")
            return
        question = rewrite_text[(qid, rid)] if rid >= 0 else None
        messages = bench.decode_messages(item, question)
        key = CallKey(dataset, split, qid, model, rid, did)
        row: dict[str, Any] = {
            "dataset": dataset,
            "split": split,
            "query_id": qid,
            "model": model,
            "view": view,
            "rewrite_id": rid,
            "decode_id": did,
            "prompt_sha256": prompt_sha256(messages),
            "run_id": run_id,
        }
        try:
            gen = await generate(spec, messages, params, key=key)
        except LLMCallError as err:
            row |= {
                "response": None,
                "parsed": None,
                "parse_ok": False,
                "score": None,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_usd": 0.0,
                "latency_s": err.elapsed_s,  # the time spent on the key, retries included
                "status": "error",
                "error": str(err),
                "attempts": max(int(err.attempts), 1),
            }
            report.failed += 1
            report.count_error(error_cause(err))
            if err.transient:
                report.transient_failed += 1
            prog.add(failed=1, key=(dataset, split, qid, model, rid, did))
        else:
            sc = bench.score(gen.text, item)
            row |= {
                "response": gen.text,
                "parsed": sc.parsed,
                "parse_ok": sc.parse_ok,
                "score": float(sc.value),
                "prompt_tokens": gen.prompt_tokens,
                "completion_tokens": gen.completion_tokens,
                "cost_usd": gen.cost_usd,
                "latency_s": gen.latency_s,
                "status": "ok",
                "error": None,
                "attempts": gen.attempts,
            }
            report.ok += 1
            report.cost_usd += gen.cost_usd
            prog.add(ok=1, cost=gen.cost_usd, key=(dataset, split, qid, model, rid, did))
        row["created_at"] = datetime.now(UTC)
        async with lock:
            # The store write is synchronous and short (tens of ms); holding the lock keeps
            # checkpoints ordered and never concurrent within a shard.
            checkpoint.add(row)

    try:
        cells = todo.select("query_id", "view", "rewrite_id", "decode_id").iter_rows()
        await _run_all([_gated(gate, one(*r)) for r in cells])
    finally:
        # Also on failure or cancellation: what completed is stored, so it is never re-billed.
        checkpoint.flush()
    report.wall_s = time.monotonic() - t0
    return report


@functools.lru_cache(maxsize=4)
def embedding_similarity(encoder: str) -> Callable[[list[str], list[str]], list[float]]:
    """A ``similarity(originals, rewrites)`` function: cosine of sentence embeddings from
    ``encoder`` (TF-IDF fitted on the pair's texts when the sentence encoder is unavailable).
    Memoised: the encoder loads once per process."""
    import numpy as np

    from dars.routers.encoders import TfidfEncoder, make_encoder

    enc = make_encoder(encoder)

    def similarity(originals: list[str], rewrites: list[str]) -> list[float]:
        if isinstance(enc, TfidfEncoder):
            from sklearn.feature_extraction.text import TfidfVectorizer

            vec = TfidfVectorizer(ngram_range=(1, 2)).fit(originals + rewrites)
            a = vec.transform(originals).toarray()
            b = vec.transform(rewrites).toarray()
        else:
            # Each original appears once per rewrite: encode every distinct text once.
            uniq = list(dict.fromkeys(originals + rewrites))
            vecs = enc.encode(uniq)
            idx = {t: i for i, t in enumerate(uniq)}
            a = vecs[[idx[t] for t in originals]]
            b = vecs[[idx[t] for t in rewrites]]
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return [float(x) for x in (a * b).sum(axis=1)]

    return similarity


# --------------------------------------------------------------------------------------------
# budget estimate


#: Columns of :func:`estimate_budget`.
BUDGET_SCHEMA = {
    "dataset": pl.String,
    "split": pl.String,
    "model": pl.String,
    "calls": pl.UInt32,
    "prompt_tokens": pl.Float64,
    "max_cost_usd": pl.Float64,
    "typical_cost_usd": pl.Float64,
}


def estimate_budget(exp: Experiment, *, remaining: bool = True) -> pl.DataFrame:
    """Calls still to make and their cost bound, per (dataset, split, model).

    One row per partition of the plan with ``calls`` (keys not yet stored ok under
    ``exp.root`` when ``remaining``, else all planned keys), ``prompt_tokens`` estimated from
    the rendered original prompt (characters / 4), ``max_cost_usd`` assuming every call uses
    its full ``max_tokens`` (an upper bound) and ``typical_cost_usd`` assuming a quarter of it.
    Rewriter calls are one more row with model = the rewriter's name.
    """
    if not exp.collected:  # imported datasets only: nothing to call
        return pl.DataFrame(schema=BUDGET_SCHEMA)
    splits = load_splits(exp)
    plan = build_plan(exp, splits)
    root = exp.root
    against_store = remaining and Path(root).exists()
    if against_store:
        done = (
            scan_observations(root)
            .filter(pl.col("status") == "ok")
            .select("dataset", "split", "query_id", "model", "rewrite_id", "decode_id")
        )
        plan = plan.lazy().join(done, on=list(done.collect_schema()), how="anti").collect()
    tokens: dict[tuple[str, str], float] = {}
    for spec in exp.collected:
        d, by_split, bench = spec.name, splits[spec.name], benchmark_for(spec)
        for items in by_split.values():
            for it in items:
                chars = sum(len(m["content"]) for m in bench.decode_messages(it))
                tokens[(d, it.query_id)] = chars / 4
    tok = pl.DataFrame(
        {
            "dataset": [k[0] for k in tokens],
            "query_id": [k[1] for k in tokens],
            "prompt_tokens": list(tokens.values()),
        }
    )
    prices = pl.DataFrame(
        {
            "model": [m.name for m in exp.pool.models],
            "pin": [(m.input_price_per_m or 0.0) / 1e6 for m in exp.pool.models],
            "pout": [(m.output_price_per_m or 0.0) / 1e6 for m in exp.pool.models],
        }
    )
    max_tok = pl.col("dataset").map_elements(exp.protocol.max_tokens_for, return_dtype=pl.Int64)
    rows = (
        plan.join(tok, on=["dataset", "query_id"], how="left", maintain_order="left")
        .join(prices, on="model", how="left", maintain_order="left")
        .with_columns(max_tok.alias("max_tokens"))
        .with_columns(
            (pl.col("prompt_tokens") * pl.col("pin") + pl.col("max_tokens") * pl.col("pout")).alias(
                "max_cost"
            ),
            (
                pl.col("prompt_tokens") * pl.col("pin")
                + 0.25 * pl.col("max_tokens") * pl.col("pout")
            ).alias("typical_cost"),
        )
        .group_by("dataset", "split", "model", maintain_order=True)
        .agg(
            pl.len().alias("calls"),
            pl.col("prompt_tokens").sum().round(0).alias("prompt_tokens"),
            pl.col("max_cost").sum().alias("max_cost_usd"),
            pl.col("typical_cost").sum().alias("typical_cost_usd"),
        )
    )
    rw = exp.rewriter
    assert rw is not None  # the config requires one when a benchmark is collected
    rw_key = ["dataset", "split", "query_id", "rewrite_id"]
    rw_plan = expected_rewrites(exp, splits).select(rw_key)
    if against_store:
        # A query with any planned rewrite missing costs one rewriter call (it asks for all).
        have = scan_rewrites(root).select(rw_key).collect()
        rw_plan = rw_plan.join(have, on=rw_key, how="anti")
    rw_plan = rw_plan.select("dataset", "split", "query_id").unique(maintain_order=True)
    rw_rows = (
        rw_plan.join(tok, on=["dataset", "query_id"], how="left", maintain_order="left")
        .group_by("dataset", "split", maintain_order=True)
        .agg(pl.len().alias("calls"), pl.col("prompt_tokens").sum().round(0))
        .with_columns(
            pl.lit(rw.name).alias("model"),
            (
                pl.col("prompt_tokens") * (rw.input_price_per_m or 0) / 1e6
                + pl.col("calls") * 1024 * (rw.output_price_per_m or 0) / 1e6
            ).alias("max_cost_usd"),
            (
                pl.col("prompt_tokens") * (rw.input_price_per_m or 0) / 1e6
                + pl.col("calls") * 256 * (rw.output_price_per_m or 0) / 1e6
            ).alias("typical_cost_usd"),
        )
        .select(rows.columns)
    )
    return pl.concat([rw_rows.cast(rows.schema), rows])


# --------------------------------------------------------------------------------------------
# planning: which shards still have work


def pending_rewrite_shards(exp: Experiment) -> tuple[list[dict[str, Any]], int]:
    """The (dataset, split, shard) rewrite shards with a planned rewrite not stored yet, with
    ``done`` (rewrites already stored), and the number of shards that are complete."""
    plan = expected_rewrites(exp, load_splits(exp))
    key = ["dataset", "split", "query_id", "rewrite_id"]
    have = scan_rewrites(exp.root).select(key).collect()
    done = plan.join(have, on=key, how="semi").group_by("dataset", "split", "shard").len("done")
    shards = (
        plan.group_by("dataset", "split", "shard", maintain_order=True)
        .len("expected")
        .join(done, on=["dataset", "split", "shard"], how="left")
        .with_columns(pl.col("done").fill_null(0))
    )
    todo = shards.filter(pl.col("done") < pl.col("expected"))
    return todo.select("dataset", "split", "shard", "done").to_dicts(), shards.height - todo.height


def pending_decode_shards(exp: Experiment) -> tuple[list[dict[str, Any]], int]:
    """The (dataset, split, model, shard) decode shards with a planned key not stored ok yet,
    with ``done`` (keys already stored ok), and the number of shards that are complete.
    Reads the store with :func:`~dars.storage.read_observations` (safe while shards are being
    replaced)."""
    plan = build_plan(exp, load_splits(exp))
    st = status(plan, read_observations(exp.root, [*KEY, "status"])).filter(
        pl.col("dataset").is_not_null()
    )
    todo = st.filter(pl.col("done") < pl.col("expected"))
    rows = todo.select("dataset", "split", "model", "shard", "done").to_dicts()
    return rows, st.height - todo.height


# --------------------------------------------------------------------------------------------
# the simulator's truth, for label recovery


def store_truth(exp: Experiment, dataset: str, *, world: SimWorld | None = None) -> Path | None:
    """Store the simulator's truth of ``dataset`` (:func:`dars.sim.simulated_truth`) when the
    pool is simulated (returns its path); for any other pool remove a truth left by an earlier
    simulated run (returns None)."""
    if not exp.pool.simulated or exp.benchmark(dataset).source == "store":
        remove_truth(exp.root, dataset)
        return None
    return write_truth(exp.root, dataset, simulated_truth(exp, dataset, world=world))


# --------------------------------------------------------------------------------------------
# Prefect tasks: one task run per partition shard, never per call


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only shards with calls that failed for a transient reason (429, 5xx, timeout,
    connection, malformed body); not shards blocked by the spend cap or missing rewrites, nor
    shards whose calls failed for good (auth, bad request), since the retry would repeat them."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, ShardIncomplete) and exc.report.transient_failed > 0


# No Prefect cache: the store is the cache. A shard's work is its rows in the store, not its
# return value; every run re-reads the store (keys stored ok are never requested again) and the
# flows submit no task for a complete partition. So a cache hit could only ever happen after
# data was lost (a shard file deleted to redo it), and would then wrongly skip the work.
# ``done_before`` stays as a parameter: the Prefect UI shows how far the shard was.
_CACHE = NO_CACHE


@task(name="plan-rewrites", retries=1, retry_delay_seconds=5, cache_policy=_CACHE)
def plan_rewrites_task(exp: Experiment) -> tuple[list[dict[str, Any]], int]:
    """The rewrite shards with work left (see :func:`pending_rewrite_shards`)."""
    return pending_rewrite_shards(exp)


@task(name="plan-decodes", retries=1, retry_delay_seconds=5, cache_policy=_CACHE)
def plan_decodes_task(exp: Experiment) -> tuple[list[dict[str, Any]], int]:
    """The decode shards with work left (see :func:`pending_decode_shards`)."""
    return pending_decode_shards(exp)


@task(
    name="rewrite-shard",
    task_run_name="rewrite {dataset}/{split}/shard-{shard}",
    retries=2,
    retry_delay_seconds=[2, 20],
    retry_condition_fn=_retry_transient,
    cache_policy=_CACHE,
)
def rewrite_shard_task(
    exp: Experiment, dataset: str, split: str, shard: int, done_before: int, run_id: str
) -> dict[str, Any]:
    """Fill the missing rewrites of one (dataset, split, shard); raises ShardIncomplete (after
    storing what succeeded) when some query failed."""
    similarity = embedding_similarity(exp.encoder)
    report = run_sync(
        rewrite_shard(exp, dataset, split, shard, run_id=run_id, similarity=similarity)
    )
    if not report.complete:
        raise ShardIncomplete(report)
    return report.to_dict()


@task(
    name="decode-shard",
    task_run_name="decode {dataset}/{split}/{model}/shard-{shard}",
    retries=2,
    retry_delay_seconds=[2, 20],
    retry_condition_fn=_retry_transient,
    cache_policy=_CACHE,
)
def decode_shard_task(
    exp: Experiment,
    dataset: str,
    split: str,
    model: str,
    shard: int,
    done_before: int,
    run_id: str,
) -> dict[str, Any]:
    """Run, score and store the missing observations of one (dataset, split, model, shard);
    raises ShardIncomplete (after storing what succeeded) when some key failed or could not
    run."""
    report = run_sync(decode_shard(exp, dataset, split, model, shard, run_id=run_id))
    if not report.complete:
        raise ShardIncomplete(report)
    return report.to_dict()


@task(name="store-truth", task_run_name="truth {dataset}", cache_policy=_CACHE)
def truth_task(exp: Experiment, dataset: str) -> str | None:
    """Store (simulated pool) or remove (any other pool) the ground truth of ``dataset``."""
    path = store_truth(exp, dataset)
    return None if path is None else str(path)


def collection_status(exp: Experiment) -> pl.DataFrame:
    """Progress of the experiment's plan in its store (:func:`dars.plan.status`: one row per
    (dataset, split, model, shard) with expected / done / failed / missing, then a total row).
    Reads with :func:`~dars.storage.read_observations`, so it is safe during a collection."""
    return status(build_plan(exp, load_splits(exp)), read_observations(exp.root, [*KEY, "status"]))
