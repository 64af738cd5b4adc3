"""What a role is: a protocol with one async call (inspect_ai's ``Solver``).

The concrete roles (``UserSimulator``, ``Inducer``, ...) satisfy these, and
so does any object with the same call, such as a scripted stand-in or a role
on another kind of model. Each signature is also the role's information-flow
contract: the rejected responder's call has no persona to pass, the
preferred responder's only the inferred one.

``TreeRoles`` is the typed bundle that grows a preference tree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..environment import InferredPersona, Persona, PreferenceCheck
from ._rating import Rating
from .gateway import CallContext

Messages = Sequence[dict[str, str]]


class UserRole(Protocol):
    """Plays the persona: writes the user's next message m_i."""

    async def __call__(self, persona: Persona, conversation: Messages, *, seed: int | None = None,
                       context: CallContext | None = None) -> str: ...


class InducerRole(Protocol):
    """Finds which parts of the persona the conversation (with m_i) has revealed."""

    async def __call__(self, persona: Persona, conversation: Messages, *, seed: int | None = None,
                       context: CallContext | None = None) -> InferredPersona: ...


class PreferredRole(Protocol):
    """Replies to m_i tailored to the inferred persona, never the full one."""

    async def __call__(self, conversation: Messages, message: str, inferred: InferredPersona, *,
                       seed: int | None = None, context: CallContext | None = None) -> str: ...


class RejectedRole(Protocol):
    """Replies to m_i with no persona information at all."""

    async def __call__(self, conversation: Messages, message: str, *, seed: int | None = None,
                       context: CallContext | None = None) -> str: ...


class PreferenceJudgeRole(Protocol):
    """Compares p_i and r_i with the full persona, in both orders."""

    async def __call__(self, persona: Persona, conversation: Messages, message: str, preferred: str,
                       rejected: str, *, seed: int | None = None,
                       context: CallContext | None = None) -> PreferenceCheck: ...


class AlignmentJudgeRole(Protocol):
    """Scores one reply to m_i 1-5 for how well it fits the persona (ALOE);
    ``rate`` also gives the score distribution when the endpoint returns logprobs."""

    async def __call__(self, persona: Persona, message: str, reply: str, *, seed: int | None = None,
                       context: CallContext | None = None) -> int: ...

    async def rate(self, persona: Persona, message: str, reply: str, *, seed: int | None = None,
                   context: CallContext | None = None) -> Rating: ...


@dataclass(frozen=True)
class TreeRoles:
    """The roles that grow a preference tree; ``preference_judge`` is needed
    only when the preference check is on."""

    user: UserRole
    inducer: InducerRole
    preferred: PreferredRole
    rejected: RejectedRole
    preference_judge: PreferenceJudgeRole | None = None

    @classmethod
    def from_roles(cls, roles: Mapping[str, Any]) -> TreeRoles:
        """The bundle from ``make_roles``' ``{role name: role}``."""
        return cls(user=roles["user"], inducer=roles["inducer"], preferred=roles["preferred"],
                   rejected=roles["rejected"], preference_judge=roles.get("preference_judge"))
