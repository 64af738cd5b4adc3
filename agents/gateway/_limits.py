"""Client-side limits: a concurrency limit that remembers its peak, a
requests/tokens-per-minute token bucket, and the run-wide retry budget."""

from __future__ import annotations

import time
from typing import Self

import anyio


class PeakLimiter:
    """A ``CapacityLimiter`` that also counts how many holders it has had at once."""

    def __init__(self, total: int) -> None:
        self._limiter = anyio.CapacityLimiter(total)
        self.in_flight = 0
        self.peak = 0

    @property
    def total(self) -> int:
        return int(self._limiter.total_tokens)

    async def __aenter__(self) -> Self:
        await self._limiter.acquire()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._limiter.release()


class TokenBucket:
    """Refills ``per_minute`` units a minute up to one minute's worth; ``take(n)``
    waits (first come, first served) until n units are there. Units may go
    negative through ``charge`` when a call used more than was reserved."""

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.level = self.capacity
        self._stamp = time.monotonic()
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, n: float = 1.0) -> None:
        n = min(n, self.capacity)
        async with self._lock:
            while True:
                self._refill()
                if self.level >= n:
                    self.level -= n
                    return
                await anyio.sleep((n - self.level) / self.rate)

    def charge(self, n: float) -> None:
        """Account for ``n`` more units used than were taken (n may be negative)."""
        self._refill()
        self.level = min(self.capacity, self.level - n)


class RetryBudget:
    """How many retries the whole run may still spend, across every call."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.spent = 0

    def take(self) -> bool:
        if self.spent >= self.total:
            return False
        self.spent += 1
        return True
