"""The money ledger (``dars.storage.ledger``): reservations against the cap, settling, expiry of
dead processes' reservations, the journal, leases; and the cap shared by processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from dars.storage import RunLayout
from dars.storage.ledger import CallRef, Ledger, pid_alive


def ref(q: str = "q1", shard: int = 0, run_id: str = "r1") -> CallRef:
    return CallRef(run_id, "decode", "d", "train", q, "m", -1, 0, shard)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_ledger_lives_in_the_run_root(tmp_path):
    led = Ledger(tmp_path)
    assert led.path == RunLayout(tmp_path).ledger_file() == tmp_path / "ledger.sqlite"
    assert led.summary().billed_usd == 0 and not led.path.exists()  # reading creates nothing
    led.committed_usd()
    assert led.path.exists()


def test_a_reservation_is_granted_only_within_the_cap_and_replaced_by_the_actual_cost(tmp_path):
    led = Ledger(tmp_path)
    a = led.reserve(ref("q1"), 0.4, cap_usd=1.0, ttl_s=60)
    b = led.reserve(ref("q2"), 0.4, cap_usd=1.0, ttl_s=60)
    assert a is not None and b is not None
    assert led.committed_usd() == pytest.approx(0.8)
    assert led.summary().reserved_usd == pytest.approx(0.8)
    led.settle(a, ok=True, cost_usd=0.1, tokens=10, attempt=1)
    assert led.committed_usd() == pytest.approx(0.5)
    led.settle(b, ok=False, cost_usd=0.0, tokens=0, attempt=2)  # an error costs nothing
    assert led.committed_usd() == pytest.approx(0.1)
    s = led.summary()
    assert (s.billed_usd, s.calls, s.lost, s.reserved_usd) == (pytest.approx(0.1), 2, 0, 0)
    assert led.reserve(ref("q3"), 0.9, cap_usd=1.0, ttl_s=60) is not None  # 0.1 + 0.9 <= 1
    # 1.0 + 0.01 > 1: refused; from then on the cap counts as reached, even for a zero cost.
    assert led.reserve(ref("q4"), 0.01, cap_usd=1.0, ttl_s=60) is None
    assert led.reserve(ref("q4"), 0.0, cap_usd=1.0, ttl_s=60) is None
    assert led.reserve(ref("q4"), 0.0, cap_usd=2.0, ttl_s=60) is not None  # a raised cap
    assert led.reserve(ref("q5"), 5.0, cap_usd=None, ttl_s=60) is not None  # no cap: recorded


def test_a_dead_process_s_reservation_expires_and_frees_its_money(tmp_path):
    led = Ledger(tmp_path)
    cid = led.reserve(ref("q1"), 0.9, cap_usd=1.0, ttl_s=3600)
    with led.transaction() as conn:  # as if a SIGKILLed process had made it
        conn.execute("UPDATE spend SET pid = ? WHERE id = ?", (dead_pid(), cid))
    # Refused at first sight, granted once the dead reservation is freed (inside reserve).
    assert led.reserve(ref("q2"), 0.5, cap_usd=1.0, ttl_s=60) is not None
    assert led.summary().lost == 1
    assert led.lost_calls("decode", "d", "train", "m", 0) == {("q1", -1, 0): [cid]}
    # An expired reservation of a live process (another host's, say) is freed the same way.
    live = led.reserve(ref("q3"), 0.1, cap_usd=None, ttl_s=-1)
    assert led.expire_stale() == 1 and led.summary().lost == 2
    led.settle(live, ok=True, cost_usd=0.05, tokens=5, attempt=1)  # it answered after all
    assert led.committed_usd() == pytest.approx(0.5 + 0.05)


def test_the_journal_keeps_completed_calls_until_they_are_compacted(tmp_path):
    led = Ledger(tmp_path)
    cid = led.reserve(ref("q1", shard=2), 0.1, cap_usd=None, ttl_s=60)
    lost = led.reserve(ref("q1", shard=2), 0.1, cap_usd=None, ttl_s=60)
    led.abandon(lost)
    jid = led.settle(
        cid,
        ok=True,
        cost_usd=0.05,
        tokens=5,
        attempt=1,
        journal=(ref("q1", shard=2), json.dumps({"query_id": "q1"})),
        counted_lost=[lost],
    )
    assert led.pending("decode", "d", "train", "m", 2) == [(jid, {"query_id": "q1"})]
    assert led.pending("decode", "d", "train", "m", 1) == []
    assert led.lost_calls("decode", "d", "train", "m", 2) == {}  # counted in the row now
    led.mark_compacted([jid])
    assert led.pending("decode", "d", "train", "m", 2) == []


def test_a_lease_is_held_by_one_live_run_and_taken_over_when_its_holder_dies(tmp_path):
    led = Ledger(tmp_path)
    args = ("decode", "d", "train", "m", 0)
    assert led.claim(*args, "A", 60) is None
    assert led.holder(*args) == "A"
    assert led.claim(*args, "B", 60) == "A"  # live: refused, with the holder's run id
    assert led.claim(*args, "A", 60) is None  # the same run may take it again (a retry)
    with led.transaction() as conn:
        conn.execute("UPDATE leases SET pid = ?", (dead_pid(),))
    assert led.holder(*args) is None
    assert led.claim(*args, "B", 60) is None and led.holder(*args) == "B"
    led.release(*args, "A")  # not A's any more: nothing happens
    assert led.holder(*args) == "B"
    led.release(*args, "B")
    assert led.holder(*args) is None


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())


def _reserve_many(root: str, n: int, out: multiprocessing.Queue) -> None:
    led = Ledger(root)
    got = 0
    for i in range(n):
        cid = led.reserve(ref(f"q{os.getpid()}-{i}"), 0.01, cap_usd=1.0, ttl_s=60)
        if cid is not None:
            led.settle(cid, ok=True, cost_usd=0.01, tokens=1, attempt=1)
            got += 1
    out.put(got)


def test_the_cap_holds_across_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(str(tmp_path), 60, out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    granted = sum(out.get(timeout=5) for _ in procs)
    assert granted == 100  # 3 × 60 asked, exactly 1.00 / 0.01 granted
    assert Ledger(tmp_path).summary().billed_usd == pytest.approx(1.0)


def test_live_reservations_make_a_caller_wait_not_the_cap_reached(tmp_path):
    from dars.storage.ledger import CAP_BUSY

    led = Ledger(tmp_path)
    a = led.reserve(ref("q1"), 0.6, cap_usd=1.0, ttl_s=60)
    # 0.6 held + 0.6 > 1, but nothing is billed yet: wait for the call in flight.
    assert led.reserve(ref("q2"), 0.6, cap_usd=1.0, ttl_s=60, wait=True) == CAP_BUSY
    led.settle(a, ok=True, cost_usd=0.05, tokens=5, attempt=1)  # it cost far less than its max
    b = led.reserve(ref("q2"), 0.6, cap_usd=1.0, ttl_s=60, wait=True)
    assert b is not None and b != CAP_BUSY  # the cap was never counted as reached
    led.settle(b, ok=True, cost_usd=0.6, tokens=5, attempt=1)
    # Billed 0.65: another 0.6 can never fit, whatever settles: refused, and the cap is reached.
    assert led.reserve(ref("q3"), 0.6, cap_usd=1.0, ttl_s=60, wait=True) is None
    assert led.reserve(ref("q4"), 0.0, cap_usd=1.0, ttl_s=60, wait=True) is None
