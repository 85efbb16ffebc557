"""The money ledger of a run root: spend, cap reservations, the write-ahead journal and leases.

One SQLite database, ``<root>/ledger.sqlite`` (``RunLayout.ledger_file()``), in WAL mode with a
busy timeout. SQLite's own locking makes every operation below one short transaction that is
safe across threads, ``--processes`` workers and two runs on one root, on a local disk (not on
NFS, where SQLite's locks are not reliable). Each thread of each process has its own connection.

Tables (one row means):

* ``spend``: one LLM call (``stage`` rewrite|decode, ``run_id``, dataset, split, query_id,
  model, rewrite_id, decode_id, shard, ``attempt`` = requests the call made, client retries
  included, ``cost_usd``, ``tokens``, ``created_at``). Its ``state`` says where the call is:
  ``reserved`` (in flight: ``cost_usd`` holds the reservation), ``billed`` (answered: the actual
  cost), ``error`` (failed for good: cost 0), ``lost`` (its process died or it was cancelled
  while in flight: cost 0, the provider may still have billed it; ``reserved_usd`` keeps the
  bound) and ``counted`` (a lost call already added to a stored row's ``attempts``).
* ``totals``: one row, ``committed_usd`` = the sum of ``spend.cost_usd`` (billed costs plus live
  reservations), kept in the same transactions so the cap check reads one number, and
  ``reached_cap_usd``, the largest cap a reservation was refused under.
* ``journal``: the write-ahead copy of a completed call's result (a decode's full observation
  row, ok or error, or a rewriter's raw answer), committed in the same transaction as its
  spend row, before the call's concurrency slot is released. ``compacted`` = 1 once the row is
  in the Parquet store (its payload is then dropped).
* ``leases``: which run works on a (stage, dataset, split, model, shard): run_id, pid, host and
  an expiry that the holder renews while it works.

The spend cap (``Experiment.spend_cap_usd``) is global to the root: over all runs, threads and
processes. Before each call the caller reserves the call's maximum cost (prompt-token estimate ×
input price + ``max_tokens`` × output price, :func:`dars.llm.max_cost_usd`, the same bound the
CLI prints as "at most"); :meth:`Ledger.reserve` grants it only if ``committed_usd`` + this
reservation ≤ cap. After the call the reservation is replaced by the actual cost. Once a call
is refused under a cap, the cap counts as reached: every later reservation under a cap ≤ that
one is refused too (raise ``spend_cap_usd`` to spend more), so a second collect after the cap
was reached makes no call, even if the calls in flight then cost less than reserved. So the total
recorded spend never passes the cap by more than the excess of actual over reserved cost of the
calls in flight (0 when usage stays within ``max_tokens`` and the prompt estimate); for a model
without a known price the reservation is 0 and the bound is concurrency × max cost per call.

Reservations of dead processes expire: a ``reserved`` row whose pid is gone (same host) or whose
expiry has passed (any host) becomes ``lost`` and frees its money (:meth:`Ledger.expire_stale`,
run when a shard starts and before a reservation is refused), so a SIGKILL never locks the cap.
Leases expire the same way; :meth:`Ledger.claim` takes over a dead or expired lease.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dars.storage.layout import RunLayout

BUSY_TIMEOUT_S = 60.0
#: What :meth:`Ledger.reserve` returns, with ``wait=True``, when the cap is held only by other
#: calls' live reservations: those calls will settle (most below their maximum), so ask again
#: shortly instead of counting the cap as reached. Never a ledger id (those are ≥ 1).
CAP_BUSY = -1
STAGES = ("rewrite", "decode")
_HOST = socket.gethostname()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    query_id TEXT NOT NULL,
    model TEXT NOT NULL,
    rewrite_id INTEGER NOT NULL,
    decode_id INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    reserved_usd REAL NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_reserved ON spend(state) WHERE state = 'reserved';
CREATE INDEX IF NOT EXISTS spend_lost ON spend(stage, dataset, split, model, shard)
    WHERE state = 'lost';
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    committed_usd REAL NOT NULL,
    reached_cap_usd REAL
);
INSERT OR IGNORE INTO totals VALUES (0, 0.0, NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL,
    stage TEXT NOT NULL,
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    model TEXT NOT NULL,
    shard INTEGER NOT NULL,
    query_id TEXT NOT NULL,
    payload TEXT,
    compacted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS journal_pending ON journal(stage, dataset, split, model, shard)
    WHERE compacted = 0;
CREATE TABLE IF NOT EXISTS leases (
    stage TEXT NOT NULL,
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    model TEXT NOT NULL,
    shard INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (stage, dataset, split, model, shard)
);
"""


@dataclass(frozen=True)
class CallRef:
    """Identity of one call in the ledger: who makes it (run_id) and for which key and shard.
    Rewriter calls use model = the rewriter, rewrite_id = -1, decode_id = the parse attempt."""

    run_id: str
    stage: str
    dataset: str
    split: str
    query_id: str
    model: str
    rewrite_id: int
    decode_id: int
    shard: int


@dataclass(frozen=True)
class SpendSummary:
    """Spend of a root (or of one run): ``billed_usd`` actual cost of answered calls; ``calls``
    answered or failed calls; ``lost`` calls whose process died in flight; ``reserved_usd``
    reservations of calls in flight now."""

    billed_usd: float
    calls: int
    lost: int
    reserved_usd: float


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    with contextlib.suppress(OSError):
        # /proc/<pid>/stat field 3 is the state; Z = a zombie that will never answer a call.
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    return True


def _holder_dead(pid: int, host: str, expires_at: float, now: float) -> bool:
    return expires_at < now or (host == _HOST and not pid_alive(pid))


def _live_holder(conn: sqlite3.Connection, key: tuple[str, str, str, str, int]) -> str | None:
    """The run id holding the lease of ``key`` (stage, dataset, split, model, shard), unless its
    holder is dead or its lease expired."""
    row = conn.execute(
        "SELECT run_id, pid, host, expires_at FROM leases WHERE stage = ? AND dataset = ?"
        " AND split = ? AND model = ? AND shard = ?",
        key,
    ).fetchone()
    if row is None or _holder_dead(row[1], row[2], row[3], time.time()):
        return None
    return str(row[0])


class Ledger:
    """The ledger of one run root (see the module docstring). Cheap to create; connections are
    opened lazily, one per (process, thread)."""

    def __init__(self, root: str | Path) -> None:
        self.path = RunLayout(root).ledger_file()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    # -- connection ------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # A forked child must not use its parent's connection: open its own.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        # WAL: readers never block the writer; synchronous NORMAL: a commit survives the death
        # of the process (what a SIGKILL does), and only an OS crash can lose the last ones.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._write(conn):
            # One statement at a time: executescript would commit the open transaction.
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @staticmethod
    @contextlib.contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock at BEGIN, so the read-check-write of a reservation is
        # atomic across processes (a DEFERRED transaction could read, then fail to upgrade).
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection."""
        with self._write(self._conn()) as conn:
            yield conn

    # -- spend and the cap -----------------------------------------------------------------------
    def reserve(
        self,
        ref: CallRef,
        amount_usd: float,
        *,
        cap_usd: float | None,
        ttl_s: float,
        wait: bool = False,
    ) -> int | None:
        """Record a call about to be made, holding ``amount_usd`` (its maximum cost) against the
        cap. Returns the call's ledger id, or None when ``committed + amount > cap`` even after
        expiring the reservations of dead processes (the call must not be made).

        With ``wait=True``, a refusal that only live reservations cause (billed spend + this
        amount fits the cap) returns :data:`CAP_BUSY` instead, and the cap does not count as
        reached: the caller waits for calls in flight to settle and asks again. Without it,
        max-cost reservations of many concurrent calls would stop a collection far below its
        cap (in one test at 7% of it)."""
        amount = max(float(amount_usd), 0.0)
        got = self._try_reserve(ref, amount, cap_usd, ttl_s, final=False, wait=wait)
        if got is None:
            # A dead process's reservation may be what fills the cap: free those, try again.
            self.expire_stale()
            got = self._try_reserve(ref, amount, cap_usd, ttl_s, final=True, wait=wait)
        return got

    def _try_reserve(
        self,
        ref: CallRef,
        amount: float,
        cap_usd: float | None,
        ttl_s: float,
        *,
        final: bool,
        wait: bool = False,
    ) -> int | None:
        with self.transaction() as conn:
            if cap_usd is not None:
                committed, reached = conn.execute(
                    "SELECT committed_usd, reached_cap_usd FROM totals WHERE id = 0"
                ).fetchone()
                if reached is not None and cap_usd <= reached:
                    return None
                # The tolerance absorbs float rounding of the running sum only.
                if committed + amount > cap_usd + 1e-12:
                    refused = True
                else:
                    refused = False
            else:
                refused = False
            if refused and wait:
                (held,) = conn.execute(
                    "SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE state = 'reserved'"
                ).fetchone()
                if committed - held + amount <= cap_usd + 1e-12:
                    return CAP_BUSY  # only calls in flight stand in the way
            if refused:
                # Recorded only once no dead reservation is left to free (see ``reserve``).
                if final:
                    conn.execute(
                        "UPDATE totals SET reached_cap_usd = MAX(COALESCE(reached_cap_usd, 0), ?)"
                        " WHERE id = 0",
                        (cap_usd,),
                    )
                return None
            cur = conn.execute(
                "INSERT INTO spend (run_id, stage, dataset, split, query_id, model, rewrite_id,"
                " decode_id, shard, state, reserved_usd, cost_usd, pid, host, expires_at,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,'reserved',?,?,?,?,?,?)",
                (
                    ref.run_id,
                    ref.stage,
                    ref.dataset,
                    ref.split,
                    ref.query_id,
                    ref.model,
                    ref.rewrite_id,
                    ref.decode_id,
                    ref.shard,
                    amount,
                    amount,
                    os.getpid(),
                    _HOST,
                    time.time() + ttl_s,
                    _now_iso(),
                ),
            )
            conn.execute(
                "UPDATE totals SET committed_usd = committed_usd + ? WHERE id = 0", (amount,)
            )
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def settle(
        self,
        call_id: int,
        *,
        ok: bool,
        cost_usd: float,
        tokens: int,
        attempt: int,
        journal: tuple[CallRef, str] | None = None,
        counted_lost: Sequence[int] = (),
    ) -> int | None:
        """Replace a reservation by the call's outcome; in the same transaction journal its
        result (``journal`` = (ref, payload), payload a JSON string) and mark the ``lost`` calls
        ``counted_lost`` as counted in the stored row's ``attempts``. Returns the journal id."""
        with self.transaction() as conn:
            (old,) = conn.execute("SELECT cost_usd FROM spend WHERE id = ?", (call_id,)).fetchone()
            cost = float(cost_usd) if ok else 0.0
            conn.execute(
                "UPDATE spend SET state = ?, cost_usd = ?, tokens = ?, attempt = ? WHERE id = ?",
                ("billed" if ok else "error", cost, int(tokens), int(attempt), call_id),
            )
            # ``old`` is the reservation, or 0 if another process expired it meanwhile.
            conn.execute(
                "UPDATE totals SET committed_usd = committed_usd + ? WHERE id = 0", (cost - old,)
            )
            journal_id = None
            if journal is not None:
                ref, payload = journal
                cur = conn.execute(
                    "INSERT INTO journal (call_id, stage, dataset, split, model, shard, query_id,"
                    " payload) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        call_id,
                        ref.stage,
                        ref.dataset,
                        ref.split,
                        ref.model,
                        ref.shard,
                        ref.query_id,
                        payload,
                    ),
                )
                journal_id = cur.lastrowid
            if counted_lost:
                conn.executemany(
                    "UPDATE spend SET state = 'counted' WHERE id = ? AND state = 'lost'",
                    [(i,) for i in counted_lost],
                )
        return journal_id

    def abandon(self, call_id: int) -> None:
        """The call was cancelled before its outcome was known: mark it lost, free its money."""
        self._lose(self._conn(), [call_id])

    def _lose(self, conn: sqlite3.Connection, ids: Sequence[int]) -> int:
        n = 0
        with self._write(conn):
            for i in ids:
                row = conn.execute(
                    "SELECT cost_usd FROM spend WHERE id = ? AND state = 'reserved'", (i,)
                ).fetchone()
                if row is None:
                    continue
                conn.execute("UPDATE spend SET state = 'lost', cost_usd = 0 WHERE id = ?", (i,))
                conn.execute(
                    "UPDATE totals SET committed_usd = committed_usd - ? WHERE id = 0", (row[0],)
                )
                n += 1
        return n

    def expire_stale(self) -> int:
        """Mark reservations of dead processes (same host) or past their expiry (any host) as
        lost; returns how many."""
        conn = self._conn()
        now = time.time()
        rows = conn.execute(
            "SELECT id, pid, host, expires_at FROM spend WHERE state = 'reserved'"
        ).fetchall()
        alive: dict[int, bool] = {}
        dead = []
        for i, pid, host, exp in rows:
            if exp < now:
                dead.append(i)
            elif host == _HOST:
                if pid not in alive:
                    alive[pid] = pid_alive(pid)
                if not alive[pid]:
                    dead.append(i)
        return self._lose(conn, dead) if dead else 0

    def lost_calls(
        self, stage: str, dataset: str, split: str, model: str, shard: int
    ) -> dict[tuple[str, int, int], list[int]]:
        """Lost calls of one shard not yet counted in a stored row: {(query_id, rewrite_id,
        decode_id): [call ids]}."""
        out: dict[tuple[str, int, int], list[int]] = {}
        for i, q, r, d in self._conn().execute(
            "SELECT id, query_id, rewrite_id, decode_id FROM spend WHERE state = 'lost'"
            " AND stage = ? AND dataset = ? AND split = ? AND model = ? AND shard = ?",
            (stage, dataset, split, model, shard),
        ):
            out.setdefault((q, r, d), []).append(i)
        return out

    def summary(self, run_id: str | None = None) -> SpendSummary:
        """Spend of the whole root, or of ``run_id`` only."""
        if not self.path.exists():
            return SpendSummary(0.0, 0, 0, 0.0)
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        billed, calls, lost, reserved = (
            self._conn()
            .execute(
                "SELECT COALESCE(SUM(CASE WHEN state = 'billed' THEN cost_usd END), 0),"
                " COALESCE(SUM(state IN ('billed', 'error')), 0),"
                " COALESCE(SUM(state IN ('lost', 'counted')), 0),"
                " COALESCE(SUM(CASE WHEN state = 'reserved' THEN cost_usd END), 0)"
                f" FROM spend {where}",
                args,
            )
            .fetchone()
        )
        return SpendSummary(float(billed), int(calls), int(lost), float(reserved))

    def committed_usd(self) -> float:
        """Billed spend plus live reservations of the root: what the cap is checked against."""
        (v,) = self._conn().execute("SELECT committed_usd FROM totals WHERE id = 0").fetchone()
        return float(v)

    # -- the journal -----------------------------------------------------------------------------
    def pending(
        self, stage: str, dataset: str, split: str, model: str, shard: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Journal rows of one shard not compacted into the store yet: (journal id, payload)."""
        rows = self._conn().execute(
            "SELECT id, payload FROM journal WHERE compacted = 0 AND stage = ? AND dataset = ?"
            " AND split = ? AND model = ? AND shard = ? ORDER BY id",
            (stage, dataset, split, model, shard),
        )
        return [(i, json.loads(p)) for i, p in rows]

    def mark_compacted(self, journal_ids: Sequence[int]) -> None:
        """The rows are in the Parquet store now: mark them compacted and drop their payload."""
        if not journal_ids:
            return
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE journal SET compacted = 1, payload = NULL WHERE id = ?",
                [(i,) for i in journal_ids],
            )

    # -- leases ----------------------------------------------------------------------------------
    def claim(
        self,
        stage: str,
        dataset: str,
        split: str,
        model: str,
        shard: int,
        run_id: str,
        ttl_s: float,
    ) -> str | None:
        """Take the lease of one shard for ``run_id``; returns None when taken (free, expired,
        held by a dead process, or already this run's), else the run id of the live holder."""
        key = (stage, dataset, split, model, shard)
        with self.transaction() as conn:
            holder = _live_holder(conn, key)
            if holder is not None and holder != run_id:
                return holder
            conn.execute(
                "INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?,?,?,?)",
                (*key, run_id, os.getpid(), _HOST, time.time() + ttl_s),
            )
        return None

    def holder(self, stage: str, dataset: str, split: str, model: str, shard: int) -> str | None:
        """The run id of the live holder of a shard's lease, or None."""
        return _live_holder(self._conn(), (stage, dataset, split, model, shard))

    def renew(
        self,
        stage: str,
        dataset: str,
        split: str,
        model: str,
        shard: int,
        run_id: str,
        ttl_s: float,
    ) -> None:
        """Push the expiry of this run's lease ``ttl_s`` ahead."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE stage = ? AND dataset = ? AND split = ?"
                " AND model = ? AND shard = ? AND run_id = ? AND pid = ?",
                (time.time() + ttl_s, stage, dataset, split, model, shard, run_id, os.getpid()),
            )

    def release(
        self, stage: str, dataset: str, split: str, model: str, shard: int, run_id: str
    ) -> None:
        """Give the lease back (only if this process holds it)."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM leases WHERE stage = ? AND dataset = ? AND split = ? AND model = ?"
                " AND shard = ? AND run_id = ? AND pid = ?",
                (stage, dataset, split, model, shard, run_id, os.getpid()),
            )


_LEDGERS: OrderedDict[str, Ledger] = OrderedDict()
_LEDGERS_LOCK = threading.Lock()
# Ledgers kept open per process; an evicted one's connections close when it is collected (a
# test session opens hundreds of roots, each connection holds three file descriptors).
_MAX_OPEN = 8


def ledger(root: str | Path) -> Ledger:
    """The process-wide :class:`Ledger` of ``root`` (one connection per thread)."""
    key = str(RunLayout(root).root.resolve())
    with _LEDGERS_LOCK:
        led = _LEDGERS.get(key)
        if led is None:
            led = _LEDGERS[key] = Ledger(root)
            while len(_LEDGERS) > _MAX_OPEN:
                _LEDGERS.popitem(last=False)
        _LEDGERS.move_to_end(key)
        return led


__all__ = ["STAGES", "CallRef", "Ledger", "SpendSummary", "ledger", "pid_alive"]
