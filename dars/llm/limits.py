"""Per-model rate and concurrency limits, shared by every thread and event loop of a process.

Limits are process-wide (threading primitives polled from asyncio), not per event loop: Prefect
may run several shard tasks of one model concurrently in worker threads, each with its own loop,
and a provider's limit applies to all of them together. They are not shared between processes:
with ``--runner process`` or ``dask`` each worker process paces itself, so give each model an
``rpm``/``tpm`` divided by the number of workers that may call it at once.

Providers count requests and tokens over a sliding window (a minute, sometimes less). A bucket
that starts full and holds a second of traffic lets a minute's budget plus that second through
in the first minute, and a burst of it within one second; against a sliding 60 s window that was
8 of 356 calls answered 429 at rpm 240. So the buckets pace: each holds one unit (one request,
one token) and refills at :data:`RATE_HEADROOM` of the limit, and a reservation waits until the
bucket holds all of it — requests go out evenly spaced, ``60 / (0.98 · rpm)`` seconds apart. In
any window of ``W`` seconds at most ``0.98 · rpm · W / 60 + 1`` requests start, so a provider's
60 s window never sees more than ``rpm`` even when a request reaches it up to 1.2 s late.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

#: The share of a configured rpm/tpm the buckets pace at (see the module docstring).
RATE_HEADROOM = 0.98


class TokenBucket:
    """Thread-safe token bucket by reservation.

    It refills at ``rate`` units per second up to ``capacity`` and starts at ``initial`` units
    (default: full). ``reserve(n)`` takes ``n`` units now (the level may go negative, i.e. into
    debt) and returns how long the caller must wait until the bucket has held all ``n`` of
    them, so callers are served in arrival order and over any interval of ``t`` seconds at most
    ``capacity + rate · t`` units start. A capacity of one unit is a leaky bucket (GCRA): every
    reservation is spaced ``n / rate`` seconds after the one before it, with no burst.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        initial: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"TokenBucket needs rate > 0 and capacity > 0, got {rate}, {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity if initial is None else min(capacity, initial)
        self._t = clock()
        self._lock = threading.Lock()

    def _advance(self) -> float:
        """Refill up to now (the level is that at ``self._t``, which a reservation may have set
        in the future); returns now."""
        now = self._clock()
        if now > self._t:
            self._level = min(self.capacity, self._level + (now - self._t) * self.rate)
            self._t = now
        return now

    def wait(self, amount: float) -> float:
        """How long a reservation of ``amount`` made now would wait (nothing is reserved)."""
        with self._lock:
            now = self._advance()
            return self._t - now + max(0.0, (amount - self._level) / self.rate)

    def reserve(self, amount: float, *, after: float = 0.0) -> float:
        """Take ``amount`` units at the time the bucket holds them, but not before ``after``
        seconds from now; returns the wait until then."""
        with self._lock:
            now = self._advance()
            start = max(self._t + max(0.0, (amount - self._level) / self.rate), now + after)
            # While it waits, the bucket fills up to the reservation (which may exceed the
            # capacity): an oversized request waits for its own units, and leaves no debt.
            cap = max(self.capacity, amount)
            level = min(cap, self._level + (start - self._t) * self.rate)
            self._level, self._t = level - amount, start
            return start - now

    def refund(self, amount: float) -> None:
        """Give back units reserved but not used (e.g. max_tokens that were not generated)."""
        if amount <= 0:
            return
        with self._lock:
            self._advance()
            self._level = min(self.capacity, self._level + amount)


class ModelLimits:
    """Concurrency slots and rpm/tpm buckets of one model (shared by all threads and loops).

    The buckets refill at ``headroom`` × rpm/60 requests and tpm/60 tokens per second and hold
    ``burst_s`` seconds of that traffic, at least one unit; they start full. A request reserves
    its place in both when it asks (so requests go in the order they asked) and sleeps until
    then. The defaults pace evenly with no burst (see the module docstring); ``headroom=1,
    burst_s=1`` is the bucket dars had before (a second of traffic, full at start), kept for
    the benchmark that compares them (``bench/bench_rate_limit.py``).
    """

    def __init__(
        self,
        max_concurrency: int,
        rpm: int | None,
        tpm: int | None,
        *,
        headroom: float = RATE_HEADROOM,
        burst_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < headroom <= 1 or burst_s < 0:
            raise ValueError(f"need 0 < headroom <= 1 and burst_s >= 0, got {headroom}, {burst_s}")
        self.max_concurrency = max_concurrency
        self.rpm, self.tpm = rpm, tpm
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.rpm_bucket = self._bucket(rpm, headroom, burst_s, clock)
        self.tpm_bucket = self._bucket(tpm, headroom, burst_s, clock)
        self._reserve_lock = threading.Lock()

    @staticmethod
    def _bucket(
        per_minute: int | None, headroom: float, burst_s: float, clock: Callable[[], float]
    ) -> TokenBucket | None:
        if not per_minute:
            return None
        rate = headroom * per_minute / 60
        return TokenBucket(rate, max(1.0, rate * burst_s), clock=clock)

    def signature(self) -> tuple[int, float | None, float | None]:
        """(max_concurrency, rpm/60, tpm/60) of the limits this was built for (the configured
        ones, before the headroom): the client rebuilds the limits of a spec that changed."""
        return (
            self.max_concurrency,
            self.rpm / 60 if self.rpm else None,
            self.tpm / 60 if self.tpm else None,
        )

    def reserve(self, est_tokens: int) -> float:
        """Reserve one request and ``est_tokens`` tokens at the first time both buckets hold
        them (both are charged at that same time, so neither limit is overrun by the other's
        wait); returns the wait until then."""
        rpm, tpm = self.rpm_bucket, self.tpm_bucket
        with self._reserve_lock:
            wait = max(
                rpm.wait(1) if rpm is not None else 0.0,
                tpm.wait(est_tokens) if tpm is not None else 0.0,
            )
            if rpm is not None:
                wait = rpm.reserve(1, after=wait)
            if tpm is not None:
                wait = tpm.reserve(est_tokens, after=wait)
            return wait

    async def wait_for_rate(self, est_tokens: int) -> None:
        """Sleep until a request of ``est_tokens`` tokens may go (see the class)."""
        wait = self.reserve(est_tokens)
        if wait > 0:
            await asyncio.sleep(wait)

    def refund_tokens(self, amount: float) -> None:
        """Give back tokens reserved but not used (max_tokens that were not generated)."""
        if self.tpm_bucket is not None:
            self.tpm_bucket.refund(amount)

    async def acquire_slot(self) -> None:
        # Polling keeps the semaphore usable from any thread's event loop; the poll interval
        # grows to 20 ms so hundreds of waiters cost little CPU.
        delay = 0.001
        while not self._slots.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def release_slot(self) -> None:
        self._slots.release()
