"""The data of the world the agents act in: personas, messages, tree nodes.

Frozen dataclasses: cheap to build by the thousand, hashable, and safe to
share between concurrent tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant", "system"]
Choice = Literal["preferred", "rejected"]
Split = Literal["train", "eval"]

CHOICE_LETTER: dict[str, str] = {"preferred": "p", "rejected": "r"}


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Persona:
    """A profile (objective facts) paired with a personality (conversational traits)."""

    id: int
    profile: str
    personality: str
    split: Split = "train"

    def text(self) -> str:
        return f"Profile: {self.profile}\nPersonalities: {self.personality}"


@dataclass(frozen=True, slots=True)
class InferredPersona:
    """What the inducer found revealed so far; ``None`` means nothing yet."""

    profile: str | None = None
    personalities: str | None = None

    def render(self) -> str:
        return f"Profile: {self.profile or 'None'}\nPersonalities: {self.personalities or 'None'}"


@dataclass(frozen=True, slots=True)
class PreferenceCheck:
    """The optional preference check of a node: did a judge that sees the full
    persona prefer p_i over r_i, asked once with p_i shown first and once with
    p_i shown second (so a judge that always picks one position agrees in
    neither sense). ``swapped``: p_i and r_i were exchanged because the judge
    preferred r_i in both orders (``generation.swap_on_disagree``)."""

    preferred_first: bool
    preferred_second: bool
    swapped: bool = False

    @property
    def agrees(self) -> bool:
        """The judge preferred p_i in both orders."""
        return self.preferred_first and self.preferred_second

    @property
    def disagrees(self) -> bool:
        """The judge preferred r_i in both orders."""
        return not self.preferred_first and not self.preferred_second

    def as_dict(self) -> dict[str, bool]:
        """The stored form (the ``nodes.judge`` JSON); ``swapped`` only when true."""
        out = {"preferred_first": self.preferred_first, "preferred_second": self.preferred_second,
               "agrees": self.agrees, "disagrees": self.disagrees}
        if self.swapped:
            out["swapped"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreferenceCheck:
        return cls(bool(data.get("preferred_first")), bool(data.get("preferred_second")),
                   bool(data.get("swapped", False)))


@dataclass(frozen=True, slots=True)
class Node:
    """One turn of a preference tree: the user's message m_i, the inferred
    persona, the preferred reply p_i, the rejected reply r_i, and which of the
    two continued the conversation (s_i).

    ``branch`` names the node's place in the tree: the letters of the choices
    that led to it from the root ("" for turn 1, "pr" for the turn-3 node
    reached by continuing the preferred reply, then the rejected one).
    (tree_id, branch) is unique, which makes every write idempotent.
    """

    tree_id: int
    turn: int
    branch: str
    user_message: str
    inferred: InferredPersona
    preferred: str
    rejected: str
    continued: Choice | Literal["both"]
    judge: PreferenceCheck | None = None
    id: int | None = None
    parent_id: int | None = None

    def reply(self, choice: Choice) -> str:
        return self.preferred if choice == "preferred" else self.rejected

    def child_branch(self, choice: Choice) -> str:
        return self.branch + CHOICE_LETTER[choice]


@dataclass(frozen=True, slots=True)
class Conversation:
    """The real history {m_j, s_j} leading to a node, as chat messages."""

    messages: tuple[Message, ...] = field(default_factory=tuple)

    def then(self, *more: Message) -> Conversation:
        return Conversation(self.messages + tuple(more))

    def as_dicts(self) -> list[dict[str, str]]:
        return [m.as_dict() for m in self.messages]


def history_for(path: list[Node], upto_turn: int | None = None) -> Conversation:
    """Real conversation along a root-to-node path: m_1, s_1, ..., m_k, s_k for the
    nodes before ``upto_turn`` (all nodes if None). A path is ordered by turn and
    each node's successor continues its ``continued`` reply (for 'both' nodes,
    the successor's branch letter says which)."""
    msgs: list[Message] = []
    for i, node in enumerate(path):
        if upto_turn is not None and node.turn >= upto_turn:
            break
        msgs.append(Message("user", node.user_message))
        if i + 1 < len(path):
            letter = path[i + 1].branch[len(node.branch)]
            choice: Choice = "preferred" if letter == "p" else "rejected"
        else:
            choice = "rejected" if node.continued == "rejected" else "preferred"
        msgs.append(Message("assistant", node.reply(choice)))
    return Conversation(tuple(msgs))
