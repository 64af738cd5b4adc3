"""The rules of a preference tree, independent of models and of the bus.

A tree grows node by node. Each node is one turn: the user's message m_i,
the inferred persona, the preferred reply p_i and the rejected reply r_i.
In ``path`` mode (the paper) one of the two replies, picked by a seeded coin,
continues the conversation; in ``full`` mode both do, up to a node budget.
Where a node sits is its ``branch``: the letters of the choices from the
root. Everything here is a pure function of what is committed, so a
restarted process finds exactly the same frontier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from ._types import CHOICE_LETTER, Choice, Conversation, Message, Node

MODES = ("path", "full")
MAX_TURNS = 100  # turns per conversation a typo cannot exceed (the paper: up to 10)


def stable_int(*parts: object, bits: int = 63) -> int:
    """A platform-independent hash of the parts (Python's ``hash`` is salted)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << bits) - 1)


def continued_choice(tree_seed: int, branch: str) -> Choice:
    """The seeded coin of the paper: which reply continues the conversation."""
    return "preferred" if stable_int(tree_seed, branch, "coin") % 2 == 0 else "rejected"


def call_seed(tree_seed: int, branch: str, role: str) -> int:
    """The sampling seed of one role's call at one node."""
    return stable_int(tree_seed, branch, role, bits=31)


@dataclass(frozen=True)
class TreeSpec:
    tree_id: int
    seed: int
    turns: int
    mode: str = "path"
    node_budget: int = 64


class TreePlan:
    """Committed nodes of one tree and what to grow next."""

    def __init__(self, spec: TreeSpec, nodes: Iterable[Node] = ()) -> None:
        self.spec = spec
        self.nodes: dict[str, Node] = {n.branch: n for n in nodes}
        self.pending: set[str] = set()

    # -- structure -------------------------------------------------------
    def continued_of(self, branch: str) -> Choice | str:
        if self.spec.mode == "full":
            return "both"
        return continued_choice(self.spec.seed, branch)

    def children(self, node: Node) -> list[str]:
        if node.turn >= self.spec.turns:
            return []
        if node.continued == "both":
            return [node.branch + "p", node.branch + "r"]
        return [node.branch + CHOICE_LETTER[node.continued]]  # type: ignore[index]

    def frontier(self) -> list[str]:
        """Branches whose node should be requested now (not committed, not pending),
        in breadth-first order, within the node budget in full mode."""
        wanted: list[str] = []
        queue = [""]
        while queue:
            branch = queue.pop(0)
            node = self.nodes.get(branch)
            if node is None:
                if branch not in self.pending:
                    wanted.append(branch)
                continue
            queue.extend(self.children(node))
        if self.spec.mode == "full":
            room = self.spec.node_budget - len(self.nodes) - len(self.pending)
            wanted = wanted[: max(0, room)]
        return wanted

    def complete(self) -> bool:
        return not self.pending and not self.frontier()

    # -- history ---------------------------------------------------------
    def path_to(self, branch: str) -> list[Node]:
        """Committed ancestors of ``branch`` (root first), not including it."""
        return [self.nodes[branch[:i]] for i in range(len(branch))]

    def history(self, branch: str) -> Conversation:
        """The real conversation {m_j, s_j} before the node at ``branch``."""
        msgs: list[Message] = []
        for i, node in enumerate(self.path_to(branch)):
            choice: Choice = "preferred" if branch[i] == "p" else "rejected"
            msgs.append(Message("user", node.user_message))
            msgs.append(Message("assistant", node.reply(choice)))
        return Conversation(tuple(msgs))

    def turn_of(self, branch: str) -> int:
        return len(branch) + 1

    def add(self, node: Node) -> None:
        self.pending.discard(node.branch)
        self.nodes[node.branch] = node
