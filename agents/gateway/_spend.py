"""A run's spending limit, ``budget.usd``: the one place a run stops for money.

Every backend of a command's model pool shares one ``SpendLimit``. A call
that is not answered from the cache asks ``begin()`` before its first
attempt: while the run's spend is below the limit it goes ahead; once the
spend has reached it, it waits and never starts. ``end(cost)`` adds the
call's dollars (retries included in its one call; an unknown price adds 0,
which is why ``budget.usd`` is refused when a role's price is unknown).

The command runs its work inside ``stop_when_reached()``: once the limit is
reached, a call wants to start and no call is in flight (every call that
started has finished and was recorded), the work is cancelled (work that needs
no new call, such as replies from the cache, goes on until then), as Ctrl-C would cancel it, and
``stop.reached`` says so; the command then marks the run interrupted and
says how to go on (raise ``budget.usd``, re-run the same command).

    limit = SpendLimit(2.50, spent=already_spent_by_the_run)
    async with limit.stop_when_reached() as stop:
        await grow(...)                # calls go through Backend.chat(spend=limit)
    if stop.reached: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from ...core import Settings, setting

__all__ = ["BudgetSettings", "SpendLimit", "SpendStop"]


@dataclass(frozen=True)
class BudgetSettings(Settings):
    """The ``budget`` keys of ``aloe generate`` and ``aloe evaluate`` (docs/cost.md)."""

    usd: float | None = setting(None, help="stop the run cleanly once its calls have cost this many US dollars "
                                           "(over every invocation of the run; in-flight calls finish, the run is "
                                           "marked interrupted, exit code 4, resumable: raise it and re-run); "
                                           "null = no limit", gt=0, le=1e9)


@dataclass
class SpendStop:
    """What ``stop_when_reached`` saw: whether the limit stopped the work."""

    reached: bool = False


class SpendLimit:
    """Dollars a run may spend, what it has spent, and the calls in flight."""

    def __init__(self, usd: float, spent: float = 0.0) -> None:
        self.usd = float(usd)
        self.spent = float(spent)
        self.in_flight = 0
        self.waiting = 0  # calls that wanted to start after the limit was reached
        self._idle: anyio.Event | None = None  # set once the limit is reached with nothing in flight

    @property
    def reached(self) -> bool:
        return self.spent >= self.usd

    def _check(self) -> None:
        if self.waiting and self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def begin(self) -> None:
        """Before a call starts: go ahead below the limit; at it, wait (the work is cancelled)."""
        if self.reached:
            self.waiting += 1
            try:
                self._check()
                await anyio.sleep_forever()
            finally:
                self.waiting -= 1
        self.in_flight += 1

    def end(self, cost: float | None) -> None:
        """After a call that ``begin`` let start, answered or failed: its dollars (None: unknown, counted 0)."""
        self.in_flight -= 1
        if cost is not None and cost > 0:
            self.spent += cost
        self._check()

    @asynccontextmanager
    async def stop_when_reached(self) -> AsyncIterator[SpendStop]:
        """Run the body; cancel it once a call waits at the reached limit and no call is in flight."""
        stop = SpendStop()
        self._idle = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                assert self._idle is not None
                await self._idle.wait()
                stop.reached = True
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                yield stop
            finally:
                tg.cancel_scope.cancel()
