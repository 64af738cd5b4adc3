"""The event bus: routing by type, bounded inboxes (backpressure), the events
table, actors with N workers, error reporting, orderly shutdown."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from aloesim.core.errors import LLMError
from aloesim.environment import InferredPersona, Persona
from aloesim.environment.store import Store, connect
from aloesim.orchestration._bus import Actor, Bus
from aloesim.orchestration._messages import (
    NodeRef,
    PersonaInferred,
    ReplyReady,
    TreeFailed,
    TurnRequested,
    UserSpoke,
)

pytestmark = pytest.mark.anyio

PERSONA = Persona(1, "SECRET-PROFILE a lighthouse keeper", "SECRET-PERSONALITY terse and dry")


def request(tree: int = 1, branch: str = "") -> TurnRequested:
    return TurnRequested(NodeRef(tree, len(branch) + 1, branch, 7), PERSONA, ({"role": "user", "content": "hi"},))


def spoke(req: TurnRequested, message: str) -> UserSpoke:
    return UserSpoke(req.node, req.persona, req.history, message)


async def test_publish_reaches_every_subscriber_of_the_type_only() -> None:
    bus = Bus()
    a = bus.subscribe(TurnRequested, 4)
    b = bus.subscribe(TurnRequested, 4)
    other = bus.subscribe(UserSpoke, 4)
    await bus.publish(request())
    assert a.receive_nowait().tree_id == 1
    assert b.receive_nowait().tree_id == 1
    with pytest.raises(anyio.WouldBlock):
        other.receive_nowait()
    assert bus.published == {"TurnRequested": 1}


async def test_a_full_inbox_makes_publish_wait() -> None:
    bus = Bus()
    inbox = bus.subscribe(TurnRequested, 1)
    await bus.publish(request(1))
    with anyio.move_on_after(0.2) as scope:
        await bus.publish(request(2))  # no room: waits (backpressure), never drops
    assert scope.cancelled_caught
    assert inbox.receive_nowait().tree_id == 1
    with anyio.fail_after(1):
        await bus.publish(request(3))
    assert inbox.receive_nowait().tree_id == 3


async def test_subscribe_many_merges_types_into_one_inbox() -> None:
    bus = Bus()
    inbox = bus.subscribe_many((UserSpoke, TreeFailed), 4)
    await bus.publish(spoke(request(), "hello"))
    await bus.publish(TreeFailed(NodeRef(2, 1, "", 7), "user", "boom"))
    await bus.aclose()
    got = [m async for m in inbox]
    assert [type(m).__name__ for m in got] == ["UserSpoke", "TreeFailed"]


async def test_every_message_is_appended_to_events_without_the_persona(tmp_path: Path) -> None:
    db = tmp_path / "bus.db"
    said = spoke(request(3, "p"), "I keep a lighthouse")
    async with Store.open(db) as store:
        bus = Bus(store, run_id=None)
        for msg in (request(3, "p"), said,
                    PersonaInferred(said.node, said.history, said.message, InferredPersona("keeps a lighthouse", None)),
                    ReplyReady(said.node, "rejected", "nice"), TreeFailed(said.node, "preferred", "timeout")):
            await bus.publish(msg)
    rows = connect(db).execute("SELECT tree_id, kind, payload FROM events ORDER BY id").fetchall()
    assert [r["kind"] for r in rows] == ["TurnRequested", "UserSpoke", "PersonaInferred", "ReplyReady", "TreeFailed"]
    assert all(r["tree_id"] == 3 for r in rows)
    payloads = [json.loads(r["payload"]) for r in rows]
    assert payloads[1]["message"] == "I keep a lighthouse"
    assert payloads[2]["profile"] == "keeps a lighthouse" and payloads[2]["personalities"] is None
    assert payloads[3] == {"tree_id": 3, "turn": 2, "branch": "p", "kind": "rejected", "text": "nice"}
    for r in rows:
        assert "SECRET" not in r["payload"]


async def test_a_message_published_after_close_is_dropped_and_not_recorded(tmp_path: Path) -> None:
    db = tmp_path / "bus.db"
    async with Store.open(db) as store:
        bus = Bus(store, run_id=None)
        inbox = bus.subscribe(TurnRequested, 1)
        await bus.publish(request(1))
        await bus.aclose()
        with anyio.fail_after(1):
            await bus.publish(request(2))  # a late result: neither raises nor waits
    assert [m.tree_id async for m in inbox] == [1]
    assert bus.dropped == 1 and bus.published == {"TurnRequested": 1}
    assert connect(db).execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1


def test_event_payload_of_a_request_keeps_ids_not_history() -> None:
    p = request(5, "pr").event_payload()
    assert p == {"tree_id": 5, "turn": 3, "branch": "pr", "history_len": 1}


async def test_actor_runs_exactly_its_concurrency_and_drains_on_close() -> None:
    bus = Bus()
    inbox = bus.subscribe(TurnRequested, 3)
    in_flight = peak = 0
    handled: list[int] = []

    async def handle(msg: TurnRequested) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        handled.append(msg.tree_id)

    actor = Actor("user", inbox, handle, concurrency=3)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(actor.run)
            for i in range(20):
                await bus.publish(request(i))
            await bus.aclose()  # actors drain what is queued, then the task group ends
    assert sorted(handled) == list(range(20))
    assert peak == 3
    assert actor.handled == 20 and actor.busy == 0


async def test_llm_errors_go_to_on_error_and_the_actor_keeps_working() -> None:
    bus = Bus()
    inbox = bus.subscribe(TurnRequested, 4)
    failed: list[tuple[int, str]] = []
    ok: list[int] = []

    async def handle(msg: TurnRequested) -> None:
        if msg.tree_id == 2:
            raise LLMError("user", "http://x", "timed out", attempts=3)
        ok.append(msg.tree_id)

    async def on_error(msg: TurnRequested, exc: LLMError) -> None:
        failed.append((msg.tree_id, exc.reason))

    actor = Actor("user", inbox, handle, concurrency=2, on_error=on_error)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(actor.run)
            for i in range(4):
                await bus.publish(request(i))
            await bus.aclose()
    assert failed == [(2, "timed out")]
    assert sorted(ok) == [0, 1, 3]


async def test_other_errors_are_bugs_and_propagate() -> None:
    bus = Bus()
    inbox = bus.subscribe(TurnRequested, 1)

    async def handle(msg: TurnRequested) -> None:
        raise KeyError("bug")

    actor = Actor("user", inbox, handle, concurrency=1, on_error=None)
    with pytest.raises(BaseException) as info:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(actor.run)
                await bus.publish(request())
                await anyio.sleep(1)
    exc = info.value
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, KeyError)
