"""A clean stop on SIGINT and SIGTERM, the same for both.

``run_interruptible(fn, *args)`` runs ``await fn(*args)`` under anyio and,
when SIGINT (Ctrl-C) or SIGTERM arrives, cancels it: everything unwinds as
on any cancellation (the run is marked ``interrupted``, the store flushes,
managed servers stop), then ``Interrupted`` is raised. ``terminate_as_interrupt``
does the same for code that is not async (training): SIGTERM raises
``Interrupted`` where Ctrl-C would raise ``KeyboardInterrupt``. The CLI prints
one line for it and exits 128 + the signal number (130, 143).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio

from ._tasks import lone_error

__all__ = ["Interrupted", "run_interruptible", "terminate_as_interrupt"]

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    """The command was stopped by a signal; what it committed is kept."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


async def _until_signal(fn: Callable[..., Awaitable[T]], *args: Any) -> tuple[T | None, int | None]:
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return await fn(*args), None
    got: list[int] = []
    done: list[T] = []
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, lone_error():
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                async for signum in signals:
                    got.append(signum)
                    tg.cancel_scope.cancel()
                    return

            tg.start_soon(watch)
            done.append(await fn(*args))
            tg.cancel_scope.cancel()
    if done:  # finished (a signal that came after the end stops nothing)
        return done[0], None
    return None, got[0] if got else signal.SIGINT


def run_interruptible(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run(fn, *args)``, stopped cleanly by SIGINT or SIGTERM (then
    ``Interrupted`` is raised once ``fn`` has unwound)."""
    result, signum = anyio.run(_until_signal, fn, *args)
    if signum is not None:
        raise Interrupted(signum)
    return result  # type: ignore[return-value]


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises ``Interrupted`` (in the main thread), as Ctrl-C
    raises ``KeyboardInterrupt``: ``finally`` blocks run, records are closed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
