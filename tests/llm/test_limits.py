"""Rate and concurrency limits (``dars.llm.limits``) on their own; tests/llm/test_client.py
checks that the client keeps them against a server, across threads and event loops."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dars.llm.limits import ModelLimits, TokenBucket


def test_token_bucket_reservations_with_a_fake_clock() -> None:
    now = [0.0]
    b = TokenBucket(rate=2.0, capacity=2.0, clock=lambda: now[0])
    assert [b.reserve(1), b.reserve(1)] == [0.0, 0.0]  # the burst
    assert b.reserve(1) == pytest.approx(0.5)  # then one unit every 1/rate seconds, in order
    assert b.reserve(1) == pytest.approx(1.0)
    now[0] = 10.0  # refilled (capped at capacity)
    assert b.reserve(5) == 0.0  # larger than the bucket: waits for a full bucket, then borrows
    assert b.reserve(1) == pytest.approx(2.0)  # level -3 → needs 4 units of refill at 2/s
    b.refund(3)  # level -4 → -1
    assert b.reserve(1) == pytest.approx(1.0)


def test_token_bucket_rejects_empty_rates() -> None:
    with pytest.raises(ValueError, match="rate > 0 and capacity > 0"):
        TokenBucket(rate=0.0, capacity=1.0)


def test_model_limits_buckets_hold_one_second_of_traffic() -> None:
    lim = ModelLimits(4, rpm=120, tpm=6000)
    assert lim.signature() == (4, 2.0, 100.0)
    assert (lim.rpm_bucket.capacity, lim.tpm_bucket.capacity) == (2.0, 100.0)
    slow = ModelLimits(1, rpm=30, tpm=None)  # less than one request a second: a bucket of one
    assert slow.rpm_bucket.capacity == 1.0 and slow.tpm_bucket is None
    assert ModelLimits(2, None, None).signature() == (2, None, None)


def test_slots_bound_concurrency_across_threads_and_loops() -> None:
    lim = ModelLimits(2, None, None)
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    async def hold() -> None:
        await lim.acquire_slot()
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.02)
        with lock:
            in_flight[0] -= 1
        lim.release_slot()

    async def four() -> None:
        await asyncio.gather(*(hold() for _ in range(4)))

    threads = [threading.Thread(target=asyncio.run, args=(four(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2 and in_flight[0] == 0
