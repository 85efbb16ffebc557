"""The collect stage: rewrites and the observation matrix, one Prefect task per partition shard.

The work of a task is one of two coroutines, wrapped by the ``@task`` functions at the end:

* :func:`rewrite_shard` asks the rewriter for the rewrites of every query of one
  (dataset, split, shard) that does not have them yet, checks their validity and stores them;
* :func:`decode_shard` runs every planned observation key of one (dataset, split, model, shard)
  that is not stored with status ok yet, scores the responses and stores them.

Both resume: keys already stored ok are never requested again (a rerun never re-bills a completed
call). Money goes through the root's ledger (:mod:`dars.storage.ledger`), for every call of
both stages:

* before a call, its maximum cost is reserved against ``spend_cap_usd`` (global to the root: all
  runs, threads and processes); a refused reservation means the call is not made ("spend cap
  reached");
* when the call returns, its actual cost and its result (the full observation row, or the
  rewriter's raw answer) are committed in one ledger transaction, before the call's slot is
  released: a completed call is durable, so a SIGKILL loses only the calls in flight;
* decode rows are then compacted into the Parquet shard every ``CHECKPOINT_ROWS`` completions or
  ``CHECKPOINT_SECONDS`` (and at the end); a shard first compacts what a killed run journaled,
  so those keys count as done. Calls a killed run had in flight become ``lost`` in the ledger
  and are added to the key's ``attempts`` when it is stored;
* each shard is leased by its run while it works: a concurrent collect on the same root skips
  the shards another live run holds (``ShardReport.leased`` / ``leased_by``) instead of paying
  for them twice; a dead or expired lease is taken over.

Calls go through ``dars.llm.generate``, the same path for real providers and the simulated pool.

The flows ask :func:`plan_rewrites_task` / :func:`plan_decodes_task` which shards still have
work (they read the store; flows never do), and, for a simulated pool, :func:`truth_task` stores
the simulator's ground truth for label recovery (:mod:`dars.storage.truth`), so the supervise
stage never needs the simulator. No task is cached: the store is the cache (see ``_CACHE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Mapping, Sequence
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
from dars.llm import CallKey, GenParams, LLMCallError, generate, max_cost_usd, remember_keys
from dars.llm.loop import run_sync
from dars.plan import KEY, build_plan, expected_rewrites, filter_keys, status
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
from dars.storage.layout import RunLayout
from dars.storage.ledger import CAP_BUSY, CallRef, Ledger, ledger
from dars.storage.truth import remove_truth, write_truth
from dars.tasks.failures import ExpectedFailure, quiet_expected_failures
from dars.tasks.pending import (  # noqa: F401 - re-exported: the flows and CLI import them here
    collection_status,
    nothing_to_collect,
    pending_decode_shards,
    pending_rewrite_shards,
    truth_current,
)

# Failed shards are reported in one line each, not by Prefect tracebacks (see the module).
quiet_expected_failures()

CHECKPOINT_ROWS = 200
CHECKPOINT_SECONDS = 5.0
# The rewriter is asked again this many times when its answer cannot be parsed into n rewrites.
REWRITE_PARSE_ATTEMPTS = 3
# A shard's lease lasts this long unless renewed; the holder renews it every third of it, so a
# concurrent run takes over a shard at most this long after its holder stopped renewing.
LEASE_TTL_S = 60.0


# --------------------------------------------------------------------------------------------
# progress, shared by every shard running in this process


@dataclass
class CollectProgress:
    """Counters of one process's collection, for progress bars only (the spend cap is checked
    against the root's ledger, which every process and run shares)."""

    planned: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    cost_usd: float = 0.0
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


#: The collection stages with counters of their own (rewriter calls, decode calls).
COLLECT_STAGES = ("rewrite", "decode")
_PROGRESS = {stage: CollectProgress() for stage in COLLECT_STAGES}


def progress(stage: str = "decode") -> CollectProgress:
    """The process-wide counters of one collection stage, ``rewrite`` (rewriter calls) or
    ``decode`` (decode keys); the CLI's progress bars read them."""
    return _PROGRESS[stage]


def reset_progress(stage: str | None = None) -> CollectProgress:
    """Start fresh counters for ``stage`` (a new flow run of it; default: both stages, returning
    the decode counters); listeners are kept."""
    for s in COLLECT_STAGES if stage is None else (stage,):
        _PROGRESS[s] = CollectProgress(listeners=_PROGRESS[s].listeners)
    return _PROGRESS[stage or "decode"]


#: Why a key was not run (``ShardReport.blocked``).
SPEND_CAP = "spend cap reached"
REWRITE_MISSING = "rewrite missing"


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
    # Keys not run by reason (SPEND_CAP, REWRITE_MISSING).
    blocked: dict[str, int] = field(default_factory=dict)
    # Keys left to another live run that holds the shard's lease (or its rewrites' shard): not a
    # failure, that run collects them.
    leased: int = 0
    leased_by: str | None = None
    # Results a killed run had journaled but not stored, stored by this shard before it started.
    recovered: int = 0
    # Failed keys by cause ("server_error 500", "timeout", "auth 401", …): the one-line report.
    errors: dict[str, int] = field(default_factory=dict)
    # Per cause, what a person reads in the stage's state message ("HTTP 500
    # InternalServerError", see error_label).
    labels: dict[str, str] = field(default_factory=dict)
    cost_usd: float = 0.0
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.not_run == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def count_not_run(self, reason: str, n: int = 1) -> None:
        """Count ``n`` keys not run for ``reason`` (SPEND_CAP, REWRITE_MISSING)."""
        self.not_run += n
        self.blocked[reason] = self.blocked.get(reason, 0) + n

    def count_error(self, cause: str, n: int = 1, err: LLMCallError | None = None) -> None:
        """Count ``n`` keys failed for ``cause``; the first ``err`` of a cause labels it."""
        self.errors[cause] = self.errors.get(cause, 0) + n
        if err is not None:
            self.labels.setdefault(cause, error_label(err))


def error_cause(err: LLMCallError) -> str:
    """The failure class of a call and its HTTP status, e.g. "server_error 500", "timeout"."""
    return f"{err.kind} {err.status_code}" if err.status_code else err.kind


# The client's error detail starts with the class of the exception it caught ("Timeout: …").
_EXCEPTION_CLASS = re.compile(r"([A-Z][A-Za-z0-9_]*): ")


def error_label(err: LLMCallError) -> str:
    """A call's failure for a person: its HTTP status and the exception class the provider
    client raised ("HTTP 500 InternalServerError", "HTTP 401 AuthenticationError"), or its
    failure class when there is no status ("timeout (Timeout)", "missing_key")."""
    m = _EXCEPTION_CLASS.match(err.detail)
    if err.status_code:
        return f"HTTP {err.status_code}" + (f" {m.group(1)}" if m else "")
    return err.kind + (f" ({m.group(1)})" if m else "")


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


async def _reserve(
    led: Ledger, ref: CallRef, amount: float, cap: float | None, ttl: float
) -> int | None:
    """The call's ledger id once its maximum cost fits the cap, or None when the cap is reached
    (billed spend + this call would pass it). While only other calls' reservations fill the cap,
    wait for them to settle (backing off to 1 s), without blocking the event loop they run on."""
    delay = 0.02
    while (got := led.reserve(ref, amount, cap_usd=cap, ttl_s=ttl, wait=True)) == CAP_BUSY:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    return got


class _Checkpointer:
    """Buffers journaled rows and compacts them into the store every N rows or T seconds (and at
    the end): writes them, then marks their journal entries compacted. Killed in between, the
    entries stay pending and the next run of the shard stores them (:func:`_recover_decodes`)."""

    def __init__(
        self, write: Callable[[list[dict]], Any], led: Ledger, rows: int, seconds: float
    ) -> None:
        self._write, self._led, self._rows, self._seconds = write, led, rows, seconds
        self._buf: list[dict] = []
        self._ids: list[int] = []
        self._last = time.monotonic()

    def add(self, row: dict, journal_id: int | None) -> None:
        self._buf.append(row)
        if journal_id is not None:
            self._ids.append(journal_id)
        if len(self._buf) >= self._rows or time.monotonic() - self._last >= self._seconds:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._write(self._buf)
            self._led.mark_compacted(self._ids)
            self._buf, self._ids = [], []
        self._last = time.monotonic()


def _reservation_ttl_s(exp: Experiment) -> float:
    """How long a reservation outlives its call at most: every attempt's hard timeout and
    backoff, plus slack for rate-limit waits. Only a run on another host relies on it; on this
    host a dead process's reservations are freed by its pid."""
    return (exp.request_timeout_s * 1.5 + 35.0) * (exp.max_retries + 1) + 600.0


@contextlib.asynccontextmanager
async def _leased(
    led: Ledger, stage: str, dataset: str, split: str, model: str, shard: int, run_id: str
) -> AsyncIterator[str | None]:
    """Hold the lease of one shard while the body runs, renewing it in the background; yields
    None, or the run id of the live run that holds it (then nothing is held)."""
    holder = led.claim(stage, dataset, split, model, shard, run_id, LEASE_TTL_S)
    if holder is not None:
        yield holder
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(LEASE_TTL_S / 3)
            led.renew(stage, dataset, split, model, shard, run_id, LEASE_TTL_S)

    renewal = asyncio.ensure_future(renew())
    try:
        yield None
    finally:
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        led.release(stage, dataset, split, model, shard, run_id)


def _row_to_json(row: dict[str, Any]) -> str:
    return json.dumps({**row, "created_at": row["created_at"].isoformat()})


def _row_from_json(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "created_at": datetime.fromisoformat(payload["created_at"])}


def _recover_decodes(
    exp: Experiment, led: Ledger, dataset: str, split: str, model: str, shard: int
) -> int:
    """Store the decode rows a killed run journaled but did not compact; returns how many.

    A run killed between a store write and marking its rows compacted leaves rows that are
    stored already: those (same key, run_id and created_at) are not written again, so an error
    row's ``attempts`` is not added twice."""
    pending = led.pending("decode", dataset, split, model, shard)
    if not pending:
        return 0
    rows = [_row_from_json(p) for _, p in pending]
    ident = ["query_id", "rewrite_id", "decode_id", "run_id", "created_at"]
    have = read_observations(exp.root, ident, dataset=dataset, split=split, model=model)
    seen = set(have.iter_rows())
    fresh = [r for r in rows if tuple(r[c] for c in ident) not in seen]
    if fresh:
        write_observations(exp.root, fresh, shard=shard)
    led.mark_compacted([i for i, _ in pending])
    return len(fresh)


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
    provided) and the rows are stored. Every answer is journaled in the ledger before it is
    parsed, and answers a killed run journaled are used before asking again. A shard leased by
    another live run is skipped (``report.leased``). Returns a report; queries that failed are
    counted there.
    """
    t0 = time.monotonic()
    # Every configured key is scrubbed from this process's texts, whichever model echoes it.
    remember_keys([*exp.pool.models, exp.rewriter])
    report = ShardReport("rewrite", dataset, split, None, shard)
    splits = load_splits(exp)
    plan = expected_rewrites(exp, splits).filter(
        (pl.col("dataset") == dataset) & (pl.col("split") == split) & (pl.col("shard") == shard)
    )
    report.planned = plan.height
    if plan.height == 0:
        return report
    rewriter = exp.rewriter
    assert rewriter is not None  # the config requires one when a benchmark is collected
    led = ledger(exp.root)
    key = ["dataset", "split", "query_id", "rewrite_id"]
    async with _leased(led, "rewrite", dataset, split, rewriter.name, shard, run_id) as holder:
        # The store is read under the lease: a run that held it may just have finished.
        todo = plan.join(rewrite_keys(exp.root, dataset, split), on=key, how="anti")
        report.already_done = plan.height - todo.height
        if holder is not None:
            report.leased, report.leased_by = todo.height, holder
            if todo.height:
                report.notes.append(f"{todo.height} rewrites left to live run {holder}")
        elif todo.height:
            await _rewrite_todo(exp, led, report, splits, plan, todo, run_id, similarity)
    report.wall_s = time.monotonic() - t0
    return report


async def _rewrite_todo(
    exp: Experiment,
    led: Ledger,
    report: ShardReport,
    splits: dict,
    plan: pl.DataFrame,
    todo: pl.DataFrame,
    run_id: str,
    similarity: Callable[[list[str], list[str]], list[float]] | None,
) -> None:
    """The body of :func:`rewrite_shard` once its lease is held: ask, journal, parse, store."""
    dataset, split, shard = report.dataset, report.split, report.shard
    bench = benchmark_for(exp.benchmark(dataset))
    register_items(dataset, [it for items in splits[dataset].values() for it in items])
    by_id = items_by_id(splits[dataset])
    rewriter = exp.rewriter
    assert rewriter is not None
    params = GenParams(
        max_tokens=1024,
        temperature=exp.protocol.temperature,
        top_p=exp.protocol.top_p,
        timeout_s=exp.request_timeout_s,
        max_retries=exp.max_retries,
        empty_completion=exp.empty_completion,
    )
    prog = progress("rewrite")
    ttl = _reservation_ttl_s(exp)
    needed = todo.group_by("query_id", maintain_order=True).agg(pl.col("rewrite_id"))
    led.expire_stale()
    # Answers billed by a killed run, journaled but never stored: used before asking again.
    journaled: dict[str, list[str]] = {}
    used_journal: list[int] = []
    for jid, payload in led.pending("rewrite", dataset, split, rewriter.name, shard):
        journaled.setdefault(payload["query_id"], []).append(payload["text"])
        used_journal.append(jid)

    async def ask(qid: str, attempt: int, messages: list, n_total: int, n_ids: int) -> str | None:
        """One billed rewriter call, journaled before its answer is parsed; None when the cap
        refuses it or it fails (its ``n_ids`` missing rewrites counted in the report)."""
        ref = CallRef(run_id, "rewrite", dataset, split, qid, rewriter.name, -1, attempt, shard)
        cap = exp.spend_cap_usd
        call_id = await _reserve(led, ref, max_cost_usd(rewriter, messages, params), cap, ttl)
        if call_id is None:
            report.count_not_run(SPEND_CAP, n_ids)
            report.notes.append("spend cap reached")
            return None
        settled = False
        try:
            key = CallKey(dataset, split, qid, rewriter.name, -1, attempt, n_rewrites=n_total)
            try:
                gen = await generate(rewriter, messages, params, key=key)
            except LLMCallError as err:
                # Empty completions the provider answered (and billed) before giving up.
                led.settle(
                    call_id, ok=False, cost_usd=err.billed_usd, tokens=0, attempt=err.attempts
                )
                settled = True
                report.failed += n_ids
                report.count_error(error_cause(err), n_ids, err)
                if err.transient:
                    report.transient_failed += n_ids
                report.notes.append(f"{qid}: {err}")
                prog.add(failed=1, key=("rewrite", dataset, split, qid))
                return None
            payload = json.dumps({"query_id": qid, "text": gen.text})
            jid = led.settle(
                call_id,
                ok=True,
                cost_usd=gen.billed_usd,
                tokens=gen.prompt_tokens + gen.completion_tokens,
                attempt=gen.attempts,
                journal=(ref, payload),
            )
            settled = True
            if jid is not None:
                used_journal.append(jid)
            report.cost_usd += gen.cost_usd
            prog.add(ok=1, cost=gen.cost_usd, key=("rewrite", dataset, split, qid))
            return gen.text
        finally:
            if not settled:  # cancelled while in flight: the provider may have billed it
                led.abandon(call_id)

    async def one(qid: str, rewrite_ids: list[int]) -> tuple[Item, list[str], list[int]] | None:
        item = by_id[qid]
        n_total = int(plan.filter(pl.col("query_id") == qid).height)
        messages = bench.rewrite_messages(item, n_total)
        answers = iter(journaled.get(qid, []))
        last_err = ""
        for attempt in range(REWRITE_PARSE_ATTEMPTS):
            text = next(answers, None)
            if text is None:
                text = await ask(qid, attempt, messages, n_total, len(rewrite_ids))
                if text is None:
                    return None
            try:
                return item, parse_rewrites(text, n_total), rewrite_ids
            except ValueError as err:
                last_err = str(err)
        report.failed += len(rewrite_ids)
        report.count_error("unparseable", len(rewrite_ids))
        report.labels.setdefault("unparseable", "unparseable rewriter answer")
        report.notes.append(f"{qid}: unparseable rewriter answer: {last_err[:200]}")
        return None

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
    # Stored (or unusable): a later run asks again for what failed, not from these answers.
    led.mark_compacted(used_journal)
    report.ok = len(rows)


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

    Keys come from ``dars.plan.build_plan``; keys stored ok anywhere in the partition are skipped,
    after the rows a killed run journaled are stored (``report.recovered``). Rewrite texts come
    from the rewrite store (run the rewrite stage first); a key whose rewrite is missing is not
    run and is counted in ``not_run`` (while another live run holds that rewrite shard, the
    shard waits for it to finish first). Calls run concurrently, bounded by the model's limits
    in the client; each result (ok or error) is journaled in the ledger, then becomes one store
    row at the next checkpoint. A
    shard leased by another live run is skipped (``report.leased``, ``report.leased_by``).
    """
    t0 = time.monotonic()
    # Every configured key is scrubbed from this process's texts, whichever model echoes it.
    remember_keys([*exp.pool.models, exp.rewriter])
    report = ShardReport("decode", dataset, split, model, shard)
    splits = load_splits(exp)
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
    led = ledger(exp.root)
    async with _leased(led, "decode", dataset, split, model, shard, run_id) as holder:
        if holder is None:
            led.expire_stale()
            report.recovered = _recover_decodes(exp, led, dataset, split, model, shard)
        # Read under the lease: a run that held it may just have finished the shard.
        done = done_keys(exp.root, dataset, split, model)
        todo = plan.join(done, on=list(done.columns), how="anti")
        report.already_done = plan.height - todo.height
        if holder is not None:
            report.leased, report.leased_by = todo.height, holder
            if todo.height:
                report.notes.append(f"{todo.height} keys left to live run {holder}")
        else:
            progress().add(planned=plan.height, skipped=report.already_done)
            if todo.height:
                await _decode_todo(
                    exp, led, report, splits, shard_ids, todo, run_id, checkpoint_rows,
                    checkpoint_seconds,
                )  # fmt: skip
    report.wall_s = time.monotonic() - t0
    return report


async def _decode_todo(
    exp: Experiment,
    led: Ledger,
    report: ShardReport,
    splits: dict,
    shard_ids: list[str],
    todo: pl.DataFrame,
    run_id: str,
    checkpoint_rows: int,
    checkpoint_seconds: float,
) -> None:
    """The body of :func:`decode_shard` once its lease is held: reserve, call, journal, store."""
    dataset, split, shard = report.dataset, report.split, report.shard
    model = report.model
    assert model is not None
    spec = exp.pool.get(model)
    bench = benchmark_for(exp.benchmark(dataset))
    register_items(dataset, [it for items in splits[dataset].values() for it in items])
    prog = progress()
    rewrite_text: dict[tuple[str, int], str] = {}
    if todo.filter(pl.col("rewrite_id") >= 0).height:
        if exp.rewriter is not None:
            # Another live run is writing this shard's rewrites: wait for it to finish them.
            # Skipping these keys instead could leave them to nobody — that run skips this
            # decode shard, which we hold (both collects then exit 0 with keys missing).
            delay = 0.1
            while led.holder("rewrite", dataset, split, exp.rewriter.name, shard) is not None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        stored = (
            scan_rewrites(exp.root, dataset=dataset, split=split)
            .filter(pl.col("query_id").is_in(shard_ids))
            .select("query_id", "rewrite_id", "text")
            .collect()
        )
        rewrite_text = {(q, r): t for q, r, t in stored.iter_rows()}
    by_id = items_by_id(splits[dataset])
    params = GenParams.for_benchmark(exp, dataset)
    ttl = _reservation_ttl_s(exp)
    # Calls a killed run had in flight, per key: added to the key's attempts when it is stored.
    lost = led.lost_calls("decode", dataset, split, model, shard)
    checkpoint = _Checkpointer(
        lambda rows: write_observations(exp.root, rows, shard=shard),
        led,
        checkpoint_rows,
        checkpoint_seconds,
    )
    lock = asyncio.Lock()
    gate = asyncio.Semaphore(spec.max_concurrency)

    async def one(qid: str, view: str, rid: int, did: int) -> None:
        item = by_id[qid]
        if rid >= 0 and (qid, rid) not in rewrite_text:
            report.count_not_run(REWRITE_MISSING)
            if len(report.notes) < 5:
                report.notes.append(f"rewrite {rid} of {qid} missing: run the rewrite stage")
            return
        question = rewrite_text[(qid, rid)] if rid >= 0 else None
        messages = bench.decode_messages(item, question)
        ref = CallRef(run_id, "decode", dataset, split, qid, model, rid, did, shard)
        call_id = await _reserve(
            led, ref, max_cost_usd(spec, messages, params), exp.spend_cap_usd, ttl
        )
        if call_id is None:
            report.count_not_run(SPEND_CAP)
            if "spend cap reached" not in report.notes:
                report.notes.append("spend cap reached")
            return
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
        settled = transient = False
        gen, cause, failure = None, "", None
        billed = 0.0  # what the provider billed, empty attempts included (the ledger's cost)
        try:
            try:
                gen = await generate(spec, messages, params, key=key)
            except LLMCallError as err:
                transient, cause, failure = err.transient, error_cause(err), err
                billed = err.billed_usd
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
            else:
                billed = gen.billed_usd
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
            lost_ids = lost.pop((qid, rid, did), [])
            row["attempts"] += len(lost_ids)  # requests of this key lost by a killed run
            row["created_at"] = datetime.now(UTC)
            # Durable before the slot is released: a SIGKILL from here on loses nothing.
            journal_id = led.settle(
                call_id,
                ok=gen is not None,
                cost_usd=billed,
                tokens=row["prompt_tokens"] + row["completion_tokens"],
                attempt=row["attempts"] - len(lost_ids),
                journal=(ref, _row_to_json(row)),
                counted_lost=lost_ids,
            )
            settled = True
        finally:
            if not settled:
                if gen is not None:  # answered (billed), then scoring failed: keep the cost
                    led.settle(
                        call_id,
                        ok=True,
                        cost_usd=gen.billed_usd,
                        tokens=gen.prompt_tokens + gen.completion_tokens,
                        attempt=gen.attempts,
                    )
                else:  # cancelled while in flight: the provider may have billed it
                    led.abandon(call_id)
        if gen is None:
            report.failed += 1
            report.count_error(cause, 1, failure)
            if transient:
                report.transient_failed += 1
            prog.add(failed=1, key=(dataset, split, qid, model, rid, did))
        else:
            report.ok += 1
            report.cost_usd += gen.cost_usd
            prog.add(ok=1, cost=gen.cost_usd, key=(dataset, split, qid, model, rid, did))
        async with lock:
            # The store write is synchronous and short (tens of ms); holding the lock keeps
            # checkpoints ordered and never concurrent within a shard.
            checkpoint.add(row, journal_id)

    try:
        cells = todo.select("query_id", "view", "rewrite_id", "decode_id").iter_rows()
        await _run_all([_gated(gate, one(*r)) for r in cells])
    finally:
        # Also on failure or cancellation: what completed is stored (it is journaled anyway).
        checkpoint.flush()


@functools.lru_cache(maxsize=4)
def embedding_similarity(encoder: str) -> Callable[[list[str], list[str]], list[float]]:
    """A ``similarity(originals, rewrites)`` function: cosine of sentence embeddings from
    ``encoder`` (TF-IDF fitted on the pair's texts when the sentence encoder is unavailable).
    The encoder is the process's shared one (:func:`~dars.routers.encoders.shared_encoder`):
    a sentence model loads once per process, when the first rewrites are compared."""
    import numpy as np

    from dars.routers.encoders import TfidfEncoder, shared_encoder

    enc = shared_encoder(encoder)

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


def estimate_budget(
    exp: Experiment, *, remaining: bool = True, only: Mapping[str, Sequence[str]] | None = None
) -> pl.DataFrame:
    """Calls still to make and their cost bound, per (dataset, split, model).

    One row per partition of the plan with ``calls`` (keys not yet stored ok under
    ``exp.root`` when ``remaining``, else all planned keys), ``prompt_tokens`` estimated from
    the rendered original prompt (characters / 4), ``max_cost_usd`` assuming every call uses
    its full ``max_tokens`` (an upper bound) and ``typical_cost_usd`` assuming a quarter of it.
    Rewriter calls are one more row with model = the rewriter's name. ``only`` (from
    :func:`dars.plan.key_filter`) keeps the keys of some datasets, models and splits; it
    narrows rewriter calls by dataset and split only (every model's decodes need them).
    """
    if not exp.collected:  # imported datasets only: nothing to call
        return pl.DataFrame(schema=BUDGET_SCHEMA)
    splits = load_splits(exp)
    plan = filter_keys(build_plan(exp, splits), only)
    root = exp.root
    against_store = remaining and RunLayout(root).root.exists()
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
    rw_plan = filter_keys(expected_rewrites(exp, splits), only).select(rw_key)
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
def plan_rewrites_task(
    exp: Experiment, only: dict[str, list[str]] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The rewrite shards with work left (see :func:`pending_rewrite_shards`)."""
    return pending_rewrite_shards(exp, only)


@task(name="plan-decodes", retries=1, retry_delay_seconds=5, cache_policy=_CACHE)
def plan_decodes_task(
    exp: Experiment, only: dict[str, list[str]] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The decode shards with work left (see :func:`pending_decode_shards`)."""
    return pending_decode_shards(exp, only)


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


#: Columns of :func:`partition_table`.
PARTITION_TABLE_SCHEMA = {
    "dataset": pl.String,
    "split": pl.String,
    "model": pl.String,
    "expected": pl.Int64,
    "done": pl.Int64,
    "failed": pl.Int64,
    "missing": pl.Int64,
    "cost_usd": pl.Float64,
    "error": pl.String,
}


def partition_table(
    exp: Experiment, only: Mapping[str, Sequence[str]] | None = None
) -> pl.DataFrame:
    """The store's state per partition of the plan, for the collect run's table in the UI.

    One row per (dataset, split, model) of the plan ``only`` keeps (:func:`dars.plan.key_filter`;
    all by default), in plan order: ``expected``, ``done``, ``failed``, ``missing`` planned keys
    (as :func:`dars.plan.status` counts them), ``cost_usd`` the summed cost of its planned keys'
    ok rows (what its part of the matrix cost), ``error`` the latest stored error of a key that
    is still failed (null when none is). Reads with :func:`~dars.storage.read_observations`."""
    part = ["dataset", "split", "model"]
    plan = filter_keys(build_plan(exp, load_splits(exp)), only)
    cols = [*KEY, "status", "cost_usd", "error", "created_at"]
    obs = read_observations(exp.root, cols).with_columns(
        pl.col("rewrite_id").cast(pl.Int32), pl.col("decode_id").cast(pl.Int32)
    )
    keys = plan.select(KEY).with_columns(
        pl.col("rewrite_id").cast(pl.Int32), pl.col("decode_id").cast(pl.Int32)
    )
    obs = obs.join(keys, on=list(KEY), how="semi")
    ok = obs.filter(pl.col("status") == "ok")
    cost = ok.group_by(part).agg(pl.col("cost_usd").sum())
    error = (
        obs.filter(pl.col("status") == "error")
        .join(ok.select(KEY), on=list(KEY), how="anti")
        .sort("created_at")
        .group_by(part)
        .agg(pl.col("error").last())
    )
    st = status(plan, obs).filter(pl.col("dataset").is_not_null())
    return (
        st.with_row_index("__i")
        .group_by(part)
        .agg(pl.col("__i").min(), pl.col("expected", "done", "failed", "missing").sum())
        .join(cost, on=part, how="left")
        .join(error, on=part, how="left")
        .sort("__i")
        .with_columns(pl.col("cost_usd").fill_null(0.0))
        .select(list(PARTITION_TABLE_SCHEMA))
        .cast(PARTITION_TABLE_SCHEMA)  # type: ignore[arg-type]
    )


@task(name="partition-table", retries=1, retry_delay_seconds=5, cache_policy=_CACHE)
def partition_table_task(exp: Experiment, only: dict[str, list[str]] | None = None) -> pl.DataFrame:
    """The store's state per partition (see :func:`partition_table`)."""
    return partition_table(exp, only)
