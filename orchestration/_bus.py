"""The in-process event bus: bounded inboxes, and actors.

``Bus.subscribe(kind, buffer)`` gives an actor its own bounded inbox for a
message type; ``Bus.publish(msg)`` delivers to every inbox subscribed to the
message's type, waiting for room (that wait is the backpressure), and
appends the message to the ``events`` table. ``Actor`` runs ``concurrency``
workers on one inbox inside a task group; a worker that hits an
``LLMError`` reports it with ``on_error`` instead of dying, so one bad
call fails one tree, not the run. ``Bus.aclose()`` ends the run: actors
drain their inboxes and stop, and anything published after it (a late
reply about a tree that already failed) is dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..core.errors import LLMError
from ..environment.store import Store, Trees

log = structlog.get_logger(__name__)


class Message(Protocol):
    """What the bus carries: a frozen message that names its tree and says
    what the ``events`` table keeps of it (see ``_messages``)."""

    @property
    def tree_id(self) -> int: ...

    def event_payload(self) -> dict[str, Any]: ...


M = TypeVar("M", bound=Message)


# -- the bus ----------------------------------------------------------------
class Bus:
    def __init__(self, store: Store | None = None, run_id: int | None = None) -> None:
        self._routes: dict[type, list[MemoryObjectSendStream]] = defaultdict(list)
        self._store = store
        self._run_id = run_id
        self._closed = False
        self.published: dict[str, int] = defaultdict(int)
        self.dropped = 0

    def subscribe(self, kind: type, buffer: float) -> MemoryObjectReceiveStream:
        send, receive = anyio.create_memory_object_stream[Any](buffer)
        self._routes[kind].append(send)
        return receive

    def subscribe_many(self, kinds: tuple[type, ...], buffer: float) -> MemoryObjectReceiveStream:
        """One inbox receiving several message types."""
        send, receive = anyio.create_memory_object_stream[Any](buffer)
        for kind in kinds:
            self._routes[kind].append(send.clone())
        send.close()
        return receive

    async def publish(self, msg: Message) -> None:
        if self._closed:
            self._drop(msg)
            return
        kind = type(msg)
        self.published[kind.__name__] += 1
        if self._store is not None:
            payload = msg.event_payload()
            run_id, tree_id = self._run_id, payload.get("tree_id")
            await self._store.submit(lambda c: Trees(c).add_event(run_id, tree_id, kind.__name__, payload))
        for send in self._routes.get(kind, ()):
            try:
                await send.send(msg)
            except anyio.ClosedResourceError:  # closed while this message was on its way
                self._drop(msg)

    def _drop(self, msg: Message) -> None:
        self.dropped += 1
        log.debug("bus.dropped", kind=type(msg).__name__, tree_id=msg.tree_id)

    async def aclose(self) -> None:
        """Close every inbox's sending side: actors drain what is queued and stop.
        A message published after this is dropped: the run is over, so it can only
        be a late result about a tree that has already ended (failed while one
        of its calls was still out)."""
        self._closed = True
        for sends in self._routes.values():
            for send in sends:
                await send.aclose()


# -- actors -----------------------------------------------------------------
@dataclass
class Actor(Generic[M]):
    """``concurrency`` workers consuming one inbox of ``M`` with ``handle``."""

    name: str
    inbox: MemoryObjectReceiveStream[M]
    handle: Callable[[M], Awaitable[None]]
    concurrency: int = 1
    on_error: Callable[[M, LLMError], Awaitable[None]] | None = None
    handled: int = field(default=0, init=False)
    busy: int = field(default=0, init=False)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(self.concurrency):
                tg.start_soon(self._worker, self.inbox.clone())
            self.inbox.close()
            task_status.started()

    async def _worker(self, inbox: MemoryObjectReceiveStream[M]) -> None:
        async with inbox:
            async for msg in inbox:
                self.busy += 1
                try:
                    with structlog.contextvars.bound_contextvars(actor=self.name, tree_id=msg.tree_id):
                        await self.handle(msg)
                except LLMError as exc:
                    if self.on_error is None:
                        raise
                    await self.on_error(msg, exc)
                finally:
                    self.busy -= 1
                    self.handled += 1
