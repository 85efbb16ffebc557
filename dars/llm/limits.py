"""Per-model rate and concurrency limits, shared by every thread and event loop of a process.

Limits are process-wide (threading primitives polled from asyncio), not per event loop: Prefect
may run several shard tasks of one model concurrently in worker threads, each with its own loop,
and a provider's limit applies to all of them together.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Thread-safe token bucket by reservation.

    It refills at ``rate`` units per second up to ``capacity``. ``reserve(n)`` takes ``n`` units
    now (the level may go negative, i.e. into debt) and returns how long the caller must wait
    before using them, so callers are served in arrival order and the long-run throughput never
    exceeds ``rate``. A request larger than the capacity waits for a full bucket and then borrows.
    """

    def __init__(
        self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"TokenBucket needs rate > 0 and capacity > 0, got {rate}, {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._t = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._t) * self.rate)
        self._t = now

    def reserve(self, amount: float) -> float:
        with self._lock:
            self._refill()
            need = min(amount, self.capacity)
            wait = max(0.0, (need - self._level) / self.rate)
            self._level -= amount
            return wait

    def refund(self, amount: float) -> None:
        """Give back units reserved but not used (e.g. max_tokens that were not generated)."""
        if amount <= 0:
            return
        with self._lock:
            self._refill()
            self._level = min(self.capacity, self._level + amount)


class ModelLimits:
    """Concurrency slots and rpm/tpm buckets of one model (shared by all threads and loops).

    Buckets hold one second of traffic (rpm/60 requests, tpm/60 tokens), so requests are paced
    evenly instead of bursting a minute's budget and then stalling: providers often enforce their
    per-minute limits over shorter windows.
    """

    def __init__(self, max_concurrency: int, rpm: int | None, tpm: int | None) -> None:
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.rpm_bucket = TokenBucket(rpm / 60, max(1.0, rpm / 60)) if rpm else None
        self.tpm_bucket = TokenBucket(tpm / 60, max(1.0, tpm / 60)) if tpm else None

    def signature(self) -> tuple[int, float | None, float | None]:
        return (
            self.max_concurrency,
            self.rpm_bucket.rate if self.rpm_bucket else None,
            self.tpm_bucket.rate if self.tpm_bucket else None,
        )

    async def wait_for_rate(self, est_tokens: int) -> None:
        wait = 0.0
        if self.rpm_bucket is not None:
            wait = max(wait, self.rpm_bucket.reserve(1))
        if self.tpm_bucket is not None:
            wait = max(wait, self.tpm_bucket.reserve(est_tokens))
        if wait > 0:
            await asyncio.sleep(wait)

    async def acquire_slot(self) -> None:
        # Polling keeps the semaphore usable from any thread's event loop; the poll interval
        # grows to 20 ms so hundreds of waiters cost little CPU.
        delay = 0.001
        while not self._slots.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def release_slot(self) -> None:
        self._slots.release()
