"""The messages of tree growing: frozen, slotted, each with its node flat.

Every message starts with ``node``, a ``NodeRef`` naming the tree node it is
about (tree, turn, branch, the tree's seed), followed by what the message
adds. So a handler reads ``msg.node`` whatever the message, and each
message carries exactly what its consumers need: the persona travels only
to the roles that may see it (user, inducer, preference judge), never in a
message the preferred or rejected responder reads.

``event_payload()`` is what the ``events`` table keeps of a message: ids and
new text, never the persona or the whole history again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..environment import InferredPersona, Persona, PreferenceCheck, call_seed

History = tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node of a tree being grown: its place, and the tree's seed."""

    tree_id: int
    turn: int
    branch: str
    seed: int

    def seed_for(self, role: str) -> int:
        """The sampling seed of ``role``'s call for this node."""
        return call_seed(self.seed, self.branch, role)

    def ids(self) -> dict[str, Any]:
        return {"tree_id": self.tree_id, "turn": self.turn, "branch": self.branch}


@dataclass(frozen=True, slots=True)
class NodeMessage:
    """The part every message shares: the node it is about."""

    node: NodeRef

    @property
    def tree_id(self) -> int:
        return self.node.tree_id

    def event_payload(self) -> dict[str, Any]:
        return self.node.ids()


@dataclass(frozen=True, slots=True)
class TurnRequested(NodeMessage):
    """The environment asks for the node: the user's next message, then the rest."""

    persona: Persona
    history: History

    def event_payload(self) -> dict[str, Any]:
        return {**self.node.ids(), "history_len": len(self.history)}


@dataclass(frozen=True, slots=True)
class UserSpoke(NodeMessage):
    """The user's message m_i (to the inducer, which needs the persona, and the rejected responder)."""

    persona: Persona
    history: History
    message: str

    def event_payload(self) -> dict[str, Any]:
        return {**self.node.ids(), "message": self.message}


@dataclass(frozen=True, slots=True)
class PersonaInferred(NodeMessage):
    """What the inducer found (to the preferred responder and the environment): no full persona."""

    history: History
    message: str
    inferred: InferredPersona

    def event_payload(self) -> dict[str, Any]:
        return {**self.node.ids(), "profile": self.inferred.profile, "personalities": self.inferred.personalities}


@dataclass(frozen=True, slots=True)
class ReplyReady(NodeMessage):
    """The preferred reply p_i or the rejected reply r_i."""

    kind: Literal["preferred", "rejected"]
    text: str

    def event_payload(self) -> dict[str, Any]:
        return {**self.node.ids(), "kind": self.kind, "text": self.text}


@dataclass(frozen=True, slots=True)
class PreferenceRequested(NodeMessage):
    """Both replies are ready and the preference check is on."""

    persona: Persona
    history: History
    message: str
    preferred: str
    rejected: str


@dataclass(frozen=True, slots=True)
class PreferenceChecked(NodeMessage):
    verdict: PreferenceCheck

    def event_payload(self) -> dict[str, Any]:
        return {**self.node.ids(), "verdict": self.verdict.as_dict()}


@dataclass(frozen=True, slots=True)
class TreeFailed(NodeMessage):
    """A role's call failed (after the gateway's retries): the tree stops."""

    role: str
    reason: str

    def event_payload(self) -> dict[str, Any]:
        return {"tree_id": self.node.tree_id, "branch": self.node.branch, "role": self.role, "reason": self.reason}


#: what the environment's inbox receives
ToEnvironment = PersonaInferred | ReplyReady | PreferenceChecked | TreeFailed
