"""Typed settings of the roles: the schemas of the ``agents`` and ``prompts``
config groups.

``RoleSettings`` is one role's entry (which backend, which model, sampling,
how many requests its actor keeps in flight); ``AgentsSettings`` holds one
per role with that role's defaults. ``PromptsSettings`` has no defaults: the
paper's prompts are text and live in ``conf/prompts/paper.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core import Settings, setting
from .gateway import Sampling
from .gateway._settings import KINDS, MAX_CONCURRENCY

MAX_TOKENS = 131_072   # reply length a typo cannot exceed (the largest context windows of the field)
ROLES = ("user", "inducer", "preferred", "rejected", "preference_judge", "judge", "generator")


@dataclass(frozen=True)
class RoleSettings(Settings):
    """One role: its backend, model, sampling and concurrency."""

    backend: str = setting("default", help="default = the `backend` group; or a preset: embedded | openai | vllm",
                           choices=("default", *KINDS))
    model: str | None = setting(None, help="null = the backend's model; else this model name for this role")
    temperature: float = setting(0.7, help="sampling temperature", ge=0, le=2)
    max_tokens: int = setting(128, help="max tokens per reply", ge=1, le=MAX_TOKENS)
    top_p: float = setting(0.95, help="nucleus sampling", gt=0, le=1)
    concurrency: int = setting(64, help="requests this role's actor keeps in flight (its own limit, on top of "
                                        "the backend's)", ge=1, le=MAX_CONCURRENCY)

    @property
    def sampling(self) -> Sampling:
        return Sampling(temperature=float(self.temperature), max_tokens=self.max_tokens, top_p=float(self.top_p))


def _role(**values: Any) -> Any:
    return lambda: RoleSettings(**values)


@dataclass(frozen=True)
class AgentsSettings(Settings):
    """One entry per role (``aloe generate agents.judge.backend=openai agents.judge.model=gpt-4o``)."""

    user: RoleSettings = setting(help="role-player: sees the full persona (prompt B.2.1)",
                                 factory=_role(temperature=0.8, max_tokens=96))
    inducer: RoleSettings = setting(help="extracts the revealed persona (B.2.2), structured output",
                                    factory=_role(temperature=0.0, max_tokens=200, top_p=1.0))
    preferred: RoleSettings = setting(help="replies tailored to the inferred persona (B.2.3)", factory=_role())
    rejected: RoleSettings = setting(help="replies with no persona information", factory=_role())
    preference_judge: RoleSettings = setting(help="optional preference check (generation.preference_check=true)",
                                             factory=_role(temperature=0.0, max_tokens=16, top_p=1.0))
    judge: RoleSettings = setting(help="ALOE benchmark judge (B.3), structured output {\"score\": 1-5}",
                                  factory=_role(temperature=0.0, max_tokens=16, top_p=1.0))
    generator: RoleSettings = setting(help="grows the persona pools (B.1)",
                                      factory=_role(temperature=1.0, max_tokens=1024, concurrency=4))


def _prompt(help: str) -> Any:
    return setting(help=help, nonempty=True, allowed="a prompt template (non-empty text)")


@dataclass(frozen=True)
class PromptsSettings(Settings):
    """One prompt per role; placeholders in {braces} are filled by the role."""

    profiles: str = _prompt("B.1.1: grow the profile pool ({examples}, {n})")
    personalities: str = _prompt("B.1.2: grow the personality pool ({examples}, {n})")
    user: str = _prompt("B.2.1: the user role-player's system prompt ({profile}, {personality})")
    inducer: str = _prompt("B.2.2: the inducer ({history}, {profile}, {personality})")
    preferred: str = _prompt("B.2.3: the preferred responder ({message}, {inferred})")
    rejected: str = _prompt("the rejected responder ({message}, no persona information)")
    judge: str = _prompt("B.3: the benchmark judge ({profile}, {personality}, {message}, {reply})")
    preference: str = _prompt("the optional preference check ({profile}, {personality}, {history}, {message}, "
                              "{reply_a}, {reply_b})")
