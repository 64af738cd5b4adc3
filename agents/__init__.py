"""The roles, the gateway they speak through, and the pool that builds them from config.

A role is a protocol with one async call (``UserRole``, ``InducerRole``,
``PreferredRole``, ``RejectedRole``, ``PreferenceJudgeRole``,
``AlignmentJudgeRole``; ``TreeRoles`` bundles the ones that grow a tree); the
concrete roles are built from a ``ChatModel``, a prompt, sampling settings
and the prompts' output format (JSON against a schema, or the paper's plain
text read by ``InducerText`` / ``JudgeText`` / ``PreferenceText``). ``model_pool``/``open_models`` resolve each role's backend from
config, start managed servers on demand and share one backend between roles
with equal settings; ``make_roles`` builds the role objects. The gateway
(``aloesim.agents.gateway``) is the only way roles reach a model; managed
servers live in ``aloesim.agents.servers``. ``AgentsSettings`` /
``RoleSettings`` / ``PromptsSettings`` are the typed schemas of the
``agents`` and ``prompts`` config groups."""

from ._persona_generator import PersonaGenerator, split_items
from ._pool import (
    ModelPool,
    backend_preset,
    check_budget_priced,
    check_reachable,
    make_roles,
    model_pool,
    open_models,
    pricer_of,
    prompt_format,
    role_backend_settings,
    role_sampling,
    role_settings,
    spend_limit_of,
)
from ._protocols import (
    AlignmentJudgeRole,
    InducerRole,
    Messages,
    PreferenceJudgeRole,
    PreferredRole,
    RejectedRole,
    TreeRoles,
    UserRole,
)
from ._rating import Rating, score_distribution
from ._roles import (
    AlignmentJudge,
    Inducer,
    InducerOutput,
    InducerText,
    JudgeScore,
    JudgeText,
    PreferenceJudge,
    PreferenceText,
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
    "AlignmentJudgeRole",
    "Inducer",
    "InducerOutput",
    "InducerRole",
    "InducerText",
    "JudgeScore",
    "JudgeText",
    "Messages",
    "ModelPool",
    "PersonaGenerator",
    "PreferenceJudge",
    "PreferenceJudgeRole",
    "PreferenceText",
    "PreferenceVerdict",
    "PreferredResponder",
    "PreferredRole",
    "PromptsSettings",
    "Rating",
    "RejectedResponder",
    "RejectedRole",
    "RoleSettings",
    "TreeRoles",
    "UserRole",
    "UserSimulator",
    "backend_preset",
    "check_budget_priced",
    "check_reachable",
    "make_roles",
    "model_pool",
    "open_models",
    "pricer_of",
    "prompt_format",
    "render_history",
    "role_backend_settings",
    "role_sampling",
    "role_settings",
    "score_distribution",
    "spend_limit_of",
    "split_items",
    "strip_stage_directions",
]
