"""A run's spending limit, ``budget.usd``: the one place a run stops for money.

Every backend of a command's model pool shares one ``SpendLimit``. A call
that is not answered from the cache asks ``start()`` once it holds its
endpoint slot, just before its first request is sent: while the run's spend
is below the limit it goes ahead (and is in flight until ``end``); once the
spend has reached it, the request is not sent, the slot is given back and the
call waits (``wait_at_limit``) and never starts. A call queued for a slot is
not in flight, so only the requests already sent finish. Retries of a call in
flight go on. ``charge(cost)`` adds an answered call's dollars as soon as it is
answered, ``end()`` once it is recorded (an unknown price adds 0, which is why
``budget.usd`` is refused when a role's price is unknown).

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
from contextvars import ContextVar
from dataclasses import dataclass

import anyio

from ...core import Settings, setting

__all__ = ["CALL_GATE", "BudgetSettings", "LimitReached", "SpendGate", "SpendLimit", "SpendStop"]


@dataclass(frozen=True)
class BudgetSettings(Settings):
    """The ``budget`` keys of ``aloe generate`` and ``aloe evaluate`` (docs/cost.md)."""

    usd: float | None = setting(None, help="stop the run cleanly once its calls have cost this many US dollars "
                                           "(over every invocation of the run; in-flight calls finish, the run is "
                                           "marked interrupted, exit code 4, resumable: raise it and re-run); "
                                           "null = no limit", gt=0, le=1e9)


class LimitReached(Exception):
    """Raised by ``SpendLimit.start``: the call's first request must not be sent."""


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

    def start(self) -> None:
        """A call's first request is about to be sent (its endpoint slot held): it is in flight from now
        on; ``LimitReached`` when the spend has reached the limit (then it is not sent)."""
        if self.reached:
            raise LimitReached
        self.in_flight += 1

    async def wait_at_limit(self) -> None:
        """A call that ``start`` refused waits here, out of its endpoint slot, until the work is cancelled."""
        self.waiting += 1
        try:
            self._check()
            await anyio.sleep_forever()
        finally:
            self.waiting -= 1

    def charge(self, cost: float | None) -> None:
        """Dollars of a call in flight (None: unknown, counted 0)."""
        if cost is not None and cost > 0:
            self.spent += cost

    def end(self, cost: float | None = None) -> None:
        """After a call that ``start`` let go, answered or failed, and recorded: not in flight any more;
        ``cost``: its dollars if not charged already."""
        self.in_flight -= 1
        self.charge(cost)
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


class SpendGate:
    """The budget state of one call (``budget.usd``): started once its first request went out."""

    __slots__ = ("charged", "spend", "started")

    def __init__(self, spend: SpendLimit) -> None:
        self.spend, self.started, self.charged = spend, False, False

    def open(self) -> None:
        if not self.started:
            self.spend.start()  # LimitReached: not sent
            self.started = True

    def charge(self, cost: float | None) -> None:
        """The answered call's dollars join the spend at once (before its record: no other call starts meanwhile)."""
        if self.started and not self.charged:
            self.charged = True
            self.spend.charge(cost)

    def close(self, cost: float | None) -> None:
        """The call is over (recorded): no longer in flight; its dollars, unless charged already."""
        if self.started:
            self.spend.end(None if self.charged else cost)


# the call the current task is making through Backend.chat (set there; opened by its first request)
CALL_GATE: ContextVar[SpendGate | None] = ContextVar("aloe_spend_gate", default=None)
