"""The roles and the gateway they speak through.

Roles are small async callables built from a ``ChatModel``, a prompt and
sampling settings; the gateway (``aloesim.agents.gateway``) is the only way
they reach a model; managed servers live in ``aloesim.agents.servers``."""

from ._persona_generator import PersonaGenerator, split_items
from ._rating import Rating, score_distribution
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

__all__ = [
    "AlignmentJudge",
    "Inducer",
    "InducerOutput",
    "JudgeScore",
    "PersonaGenerator",
    "PreferenceJudge",
    "PreferenceVerdict",
    "PreferredResponder",
    "Rating",
    "RejectedResponder",
    "UserSimulator",
    "render_history",
    "score_distribution",
    "split_items",
    "strip_stage_directions",
]
