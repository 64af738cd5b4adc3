"""The role actors of tree growing: each binds one role to the bus.

An actor takes one message type from its own bounded inbox, calls its role
with what that role may see, and publishes the result. A call that fails
after the gateway's retries (``LLMError``) becomes ``TreeFailed`` for the
node's tree: one bad call fails one tree, not the run.

    user               TurnRequested        ─▶ UserSpoke
    inducer            UserSpoke            ─▶ PersonaInferred
    rejected           UserSpoke            ─▶ ReplyReady(rejected)
    preferred          PersonaInferred      ─▶ ReplyReady(preferred)
    preference_judge   PreferenceRequested  ─▶ PreferenceChecked
"""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from ..agents import InducerRole, PreferenceJudgeRole, PreferredRole, RejectedRole, UserRole
from ..agents.gateway import CallContext
from ..core.errors import LLMError
from ._bus import Actor, Bus
from ._messages import (
    NodeMessage,
    NodeRef,
    PersonaInferred,
    PreferenceChecked,
    PreferenceRequested,
    ReplyReady,
    TreeFailed,
    TurnRequested,
    UserSpoke,
)

In = TypeVar("In", bound=NodeMessage)
R = TypeVar("R")


class RoleActor(Generic[In, R]):
    """One role on the bus: ``handle`` one ``In`` message, ``fail`` its tree on an ``LLMError``."""

    name: ClassVar[str]
    listens: ClassVar[type[NodeMessage]]

    def __init__(self, role: R, bus: Bus, run_id: int | None) -> None:
        self.role, self.bus, self.run_id = role, bus, run_id

    def context(self, node: NodeRef) -> CallContext:
        """What the call records say about the call (run, tree, turn, branch)."""
        return CallContext(run_id=self.run_id, tree_id=node.tree_id, turn=node.turn, branch=node.branch)

    async def handle(self, msg: In) -> None:
        raise NotImplementedError

    async def fail(self, msg: In, exc: LLMError) -> None:
        await self.bus.publish(TreeFailed(msg.node, self.name, exc.reason))

    def actor(self, concurrency: int) -> Actor[In]:
        """Subscribe (an inbox of ``concurrency`` messages) and give the runner of ``concurrency`` workers."""
        inbox = self.bus.subscribe(self.listens, concurrency)
        return Actor(self.name, inbox, self.handle, concurrency, self.fail)


class UserActor(RoleActor[TurnRequested, UserRole]):
    name, listens = "user", TurnRequested

    async def handle(self, msg: TurnRequested) -> None:
        text = await self.role(msg.persona, list(msg.history), seed=msg.node.seed_for(self.name),
                               context=self.context(msg.node))
        await self.bus.publish(UserSpoke(msg.node, msg.persona, msg.history, text))


class InducerActor(RoleActor[UserSpoke, InducerRole]):
    name, listens = "inducer", UserSpoke

    async def handle(self, msg: UserSpoke) -> None:
        seen = [*msg.history, {"role": "user", "content": msg.message}]
        inferred = await self.role(msg.persona, seen, seed=msg.node.seed_for(self.name),
                                   context=self.context(msg.node))
        await self.bus.publish(PersonaInferred(msg.node, msg.history, msg.message, inferred))


class RejectedActor(RoleActor[UserSpoke, RejectedRole]):
    name, listens = "rejected", UserSpoke

    async def handle(self, msg: UserSpoke) -> None:
        text = await self.role(list(msg.history), msg.message, seed=msg.node.seed_for(self.name),
                               context=self.context(msg.node))
        await self.bus.publish(ReplyReady(msg.node, "rejected", text))


class PreferredActor(RoleActor[PersonaInferred, PreferredRole]):
    name, listens = "preferred", PersonaInferred

    async def handle(self, msg: PersonaInferred) -> None:
        text = await self.role(list(msg.history), msg.message, msg.inferred, seed=msg.node.seed_for(self.name),
                               context=self.context(msg.node))
        await self.bus.publish(ReplyReady(msg.node, "preferred", text))


class PreferenceJudgeActor(RoleActor[PreferenceRequested, PreferenceJudgeRole]):
    name, listens = "preference_judge", PreferenceRequested

    async def handle(self, msg: PreferenceRequested) -> None:
        verdict = await self.role(msg.persona, list(msg.history), msg.message, msg.preferred, msg.rejected,
                                  seed=msg.node.seed_for(self.name), context=self.context(msg.node))
        await self.bus.publish(PreferenceChecked(msg.node, verdict))
