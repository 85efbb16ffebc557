"""Rate and concurrency limits (``dars.llm.limits``) on their own; tests/llm/test_client.py
checks that the client keeps them against a server, across threads and event loops."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dars.llm.limits import RATE_HEADROOM, ModelLimits, TokenBucket


def test_token_bucket_reservations_with_a_fake_clock() -> None:
    now = [0.0]
    b = TokenBucket(rate=2.0, capacity=2.0, clock=lambda: now[0])
    assert [b.reserve(1), b.reserve(1)] == [0.0, 0.0]  # the burst
    assert b.reserve(1) == pytest.approx(0.5)  # then one unit every 1/rate seconds, in order
    assert b.reserve(1) == pytest.approx(1.0)
    now[0] = 10.0  # refilled (capped at capacity)
    assert b.reserve(5) == pytest.approx(1.5)  # larger than the bucket: waits until it held 5
    assert b.reserve(1) == pytest.approx(2.0)  # level 0 at 11.5 → one more unit at 12.0
    b.refund(3)  # level -1 at 12.0 → capped at 2 (the capacity)
    assert b.reserve(1) == pytest.approx(2.0)  # at 12.0 the level is 2: no extra wait
    assert b.wait(2) == pytest.approx(2.5) and b.reserve(0.5, after=3.0) == pytest.approx(3.0)


def test_token_bucket_starts_at_its_initial_level() -> None:
    now = [0.0]
    b = TokenBucket(rate=4.0, capacity=4.0, initial=0.0, clock=lambda: now[0])
    assert [b.reserve(1) for _ in range(3)] == pytest.approx([0.25, 0.5, 0.75])


def test_token_bucket_rejects_empty_rates() -> None:
    with pytest.raises(ValueError, match="rate > 0 and capacity > 0"):
        TokenBucket(rate=0.0, capacity=1.0)


def test_model_limits_pace_at_the_headroom_with_no_burst() -> None:
    lim = ModelLimits(4, rpm=120, tpm=6000)
    assert lim.signature() == (4, 2.0, 100.0)  # the configured limits, what the client compares
    assert lim.rpm_bucket.rate == pytest.approx(2.0 * RATE_HEADROOM)
    assert (lim.rpm_bucket.capacity, lim.tpm_bucket.capacity) == (1.0, 1.0)
    old = ModelLimits(1, rpm=240, tpm=None, headroom=1.0, burst_s=1.0)  # the bucket of before
    assert old.rpm_bucket.capacity == 4.0 and old.tpm_bucket is None
    assert ModelLimits(2, None, None).signature() == (2, None, None)


def _starts(lim: ModelLimits, now: list[float], n: int, tokens: int = 1) -> list[float]:
    """Start times of ``n`` requests all asking at once at ``now[0]`` (fake clock)."""
    return [now[0] + lim.reserve(tokens) for _ in range(n)]


def _busiest_window(starts: list[float], window_s: float) -> int:
    """The most starts in any window [t, t + window_s) (t at a start)."""
    return max(sum(1 for u in starts if t <= u < t + window_s) for t in starts)


@pytest.mark.parametrize("rpm", [10, 240, 1200])
def test_paced_requests_never_exceed_the_rpm_in_any_60_s_window(rpm: int) -> None:
    # The bug of issue 14: a bucket full at start (a second of traffic) let rpm + rpm/60
    # requests through in the first minute: 244 at rpm 240, so a sliding 60 s window sent 429s.
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    old = ModelLimits(64, rpm, None, headroom=1.0, burst_s=1.0, clock=clock)
    old_starts = _starts(old, now, 3 * rpm)
    assert _busiest_window(old_starts, 61.2) > rpm
    if rpm >= 60:
        assert _busiest_window(old_starts, 60.0) > rpm
    new = _starts(ModelLimits(64, rpm, None, clock=clock), now, 3 * rpm)
    assert _busiest_window(new, 60.0) <= rpm
    # ... with room for each request to arrive late by up to 1.2 s (jitter, event loop).
    assert _busiest_window(new, 61.2) <= rpm
    assert len(new) / (new[-1] - new[0] + 60 / (RATE_HEADROOM * rpm)) * 60 >= 0.97 * rpm
    # Evenly spaced: the busiest second holds at most one more than the per-second rate.
    assert _busiest_window(new, 1.0) <= rpm / 60 + 1


def test_rpm_and_tpm_are_charged_at_the_same_time() -> None:
    # tpm binds (6000 tokens/min = 98/s; 49-token requests, 2 per s); the rpm (600 = 10/s) must
    # not let requests reserved during the tpm wait go out together when it ends.
    now = [0.0]
    lim = ModelLimits(64, rpm=600, tpm=6000, clock=lambda: now[0])
    starts = _starts(lim, now, 40, tokens=49)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) == pytest.approx(49 / (RATE_HEADROOM * 100))
    assert _busiest_window(starts, 60.0) * 49 <= 6000


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
