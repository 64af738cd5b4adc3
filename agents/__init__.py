"""The roles and the gateway they speak through.

Roles are small async callables built from a ``ChatModel``, a prompt and
sampling settings; the gateway (``aloesim.agents.gateway``) is the only way
they reach a model; managed servers live in ``aloesim.agents.servers``.
``AgentsSettings`` / ``RoleSettings`` / ``PromptsSettings`` are the typed
schemas of the ``agents`` and ``prompts`` config groups."""

from ._persona_generator import PersonaGenerator, split_items
from ._roles import (
    AlignmentJudge,
    Inducer,
    InducerOutput,
    JudgeScore,
    PreferenceJudge,
    PreferenceVerdict,
    PreferredResponder,
    RejectedResponder,
    UserSimulator,
    render_history,
    strip_stage_directions,
)
from ._settings import AgentsSettings, PromptsSettings, RoleSettings

__all__ = [
    "AgentsSettings",
    "AlignmentJudge",
    "Inducer",
    "InducerOutput",
    "JudgeScore",
    "PersonaGenerator",
    "PreferenceJudge",
    "PreferenceVerdict",
    "PreferredResponder",
    "PromptsSettings",
    "RejectedResponder",
    "RoleSettings",
    "UserSimulator",
    "render_history",
    "split_items",
    "strip_stage_directions",
]
