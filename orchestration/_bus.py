"""The in-process event bus: typed messages, bounded inboxes, and actors.

``Bus.subscribe(kind, buffer)`` gives an actor its own bounded inbox for a
message type; ``Bus.publish(msg)`` delivers to every inbox subscribed to the
message's type, waiting for room (that wait is the backpressure), and
appends the message to the ``events`` table; once the bus is closed, a late
message (a reply for a tree that failed meanwhile) is dropped. ``Actor`` runs
``concurrency`` workers on one inbox inside a task group; a worker that hits
an ``LLMError`` (or a bug: any other exception but an ``AloeError``) reports
it with ``on_error`` instead of dying, so one bad call fails one tree, not
the run; an ``AloeError`` (the database, a dead server) stops the run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..core import safe_text
from ..core.errors import AloeError, LLMError
from ..environment import InferredPersona, Persona
from ..environment.store import Store

log = structlog.get_logger(__name__)


# -- messages ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TurnRequested:
    """The environment asks for the node at ``branch`` of a tree."""

    tree_id: int
    turn: int
    branch: str
    seed: int
    persona: Persona
    history: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class UserSpoke:
    request: TurnRequested
    message: str

    @property
    def tree_id(self) -> int:
        return self.request.tree_id


@dataclass(frozen=True, slots=True)
class PersonaInferred:
    spoke: UserSpoke
    inferred: InferredPersona

    @property
    def tree_id(self) -> int:
        return self.spoke.tree_id


@dataclass(frozen=True, slots=True)
class ReplyReady:
    spoke: UserSpoke
    kind: str  # preferred | rejected
    text: str

    @property
    def tree_id(self) -> int:
        return self.spoke.tree_id


@dataclass(frozen=True, slots=True)
class PreferenceRequested:
    spoke: UserSpoke
    preferred: str
    rejected: str


@dataclass(frozen=True, slots=True)
class PreferenceChecked:
    spoke: UserSpoke
    verdict: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TreeFailed:
    tree_id: int
    branch: str
    role: str
    reason: str


def event_payload(msg: object) -> dict[str, Any]:
    """What the events table keeps of a message: ids and new text, never the
    persona or the whole history again."""
    if isinstance(msg, TurnRequested):
        return {"tree_id": msg.tree_id, "turn": msg.turn, "branch": msg.branch, "history_len": len(msg.history)}
    if isinstance(msg, UserSpoke):
        r = msg.request
        return {"tree_id": r.tree_id, "turn": r.turn, "branch": r.branch, "message": msg.message}
    if isinstance(msg, PersonaInferred):
        r = msg.spoke.request
        return {"tree_id": r.tree_id, "turn": r.turn, "branch": r.branch,
                "profile": msg.inferred.profile, "personalities": msg.inferred.personalities}
    if isinstance(msg, ReplyReady):
        r = msg.spoke.request
        return {"tree_id": r.tree_id, "turn": r.turn, "branch": r.branch, "kind": msg.kind, "text": msg.text}
    if isinstance(msg, PreferenceRequested):
        r = msg.spoke.request
        return {"tree_id": r.tree_id, "turn": r.turn, "branch": r.branch}
    if isinstance(msg, PreferenceChecked):
        r = msg.spoke.request
        return {"tree_id": r.tree_id, "turn": r.turn, "branch": r.branch, "verdict": msg.verdict}
    if isinstance(msg, TreeFailed):
        return {"tree_id": msg.tree_id, "branch": msg.branch, "role": msg.role, "reason": msg.reason}
    return {"repr": repr(msg)}


# -- the bus ----------------------------------------------------------------
class Bus:
    def __init__(self, store: Store | None = None, run_id: int | None = None) -> None:
        self._routes: dict[type, list[MemoryObjectSendStream]] = defaultdict(list)
        self._store = store
        self._run_id = run_id
        self.published: dict[str, int] = defaultdict(int)
        self.closed = False

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

    async def publish(self, msg: object) -> None:
        if self.closed:  # every tree is done: a late reply has nowhere to go
            log.debug("bus.late_message", kind=type(msg).__name__, tree_id=getattr(msg, "tree_id", None))
            return
        kind = type(msg)
        self.published[kind.__name__] += 1
        if self._store is not None:
            payload = event_payload(msg)
            row = (self._run_id, payload.get("tree_id"), kind.__name__,
                   safe_text(json.dumps(payload, ensure_ascii=False)), time.time())  # storable whatever it holds

            def write(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO events (run_id, tree_id, kind, payload, created_at) VALUES (?,?,?,?,?)", row)

            await self._store.submit(write, what=f"a {kind.__name__} event")
        for send in self._routes.get(kind, ()):
            try:
                await send.send(msg)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # closed while this waited for room: as above

    async def aclose(self) -> None:
        """Close every inbox's sending side: actors drain what is queued and stop."""
        self.closed = True
        for sends in self._routes.values():
            for send in sends:
                await send.aclose()


# -- actors -----------------------------------------------------------------
@dataclass
class Actor:
    """``concurrency`` workers consuming one inbox with ``handle``."""

    name: str
    inbox: MemoryObjectReceiveStream
    handle: Callable[[Any], Awaitable[None]]
    concurrency: int = 1
    on_error: Callable[[Any, Exception], Awaitable[None]] | None = None  # an LLMError, or a bug
    handled: int = field(default=0, init=False)
    busy: int = field(default=0, init=False)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(self.concurrency):
                tg.start_soon(self._worker, self.inbox.clone())
            self.inbox.close()
            task_status.started()

    async def _worker(self, inbox: MemoryObjectReceiveStream) -> None:
        async with inbox:
            async for msg in inbox:
                self.busy += 1
                try:
                    with structlog.contextvars.bound_contextvars(actor=self.name,
                                                                 tree_id=getattr(msg, "tree_id", None)):
                        await self.handle(msg)
                except LLMError as exc:
                    if self.on_error is None:
                        raise
                    await self.on_error(msg, exc)
                except AloeError:
                    raise  # the database or a managed server failed: the run cannot go on
                except Exception as exc:  # a bug in a handler: fail its tree (named), keep the run going
                    if self.on_error is None:
                        raise
                    log.exception("actor.bug", actor=self.name, error=f"{type(exc).__name__}: {exc}")
                    await self.on_error(msg, exc)
                finally:
                    self.busy -= 1
                    self.handled += 1
