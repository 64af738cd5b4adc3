"""Roles are protocols with one async call: the concrete roles keep their
protocol's call exactly, ``TreeRoles`` bundles the tree-growing ones, and
the preference judge answers with a typed verdict."""

from __future__ import annotations

import inspect

import pytest

from aloesim.agents import (
    AlignmentJudge,
    AlignmentJudgeRole,
    Inducer,
    InducerRole,
    PreferenceJudge,
    PreferenceJudgeRole,
    PreferredResponder,
    PreferredRole,
    RejectedResponder,
    RejectedRole,
    TreeRoles,
    UserRole,
    UserSimulator,
    make_roles,
)
from aloesim.agents.testing import ScriptedModel, ScriptedRequest
from aloesim.environment import Persona, PreferenceCheck
from aloesim.orchestration import compose_config

PAIRS = [(UserSimulator, UserRole), (Inducer, InducerRole), (PreferredResponder, PreferredRole),
         (RejectedResponder, RejectedRole), (PreferenceJudge, PreferenceJudgeRole),
         (AlignmentJudge, AlignmentJudgeRole)]


@pytest.mark.parametrize(("role", "protocol"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_each_role_has_exactly_the_call_of_its_protocol(role: type, protocol: type) -> None:
    assert inspect.iscoroutinefunction(role.__call__)
    assert inspect.signature(role.__call__) == inspect.signature(protocol.__call__)


def test_tree_roles_from_make_roles() -> None:
    cfg = compose_config("generate", [])
    model = ScriptedModel(lambda r: "ok")
    names = ["user", "inducer", "preferred", "rejected", "preference_judge", "judge"]
    roles = TreeRoles.from_roles(make_roles(cfg, dict.fromkeys(names, model)))
    assert (type(roles.user), type(roles.inducer), type(roles.preferred), type(roles.rejected),
            type(roles.preference_judge)) == (UserSimulator, Inducer, PreferredResponder, RejectedResponder,
                                              PreferenceJudge)
    without = TreeRoles.from_roles(make_roles(cfg, dict.fromkeys(names[:4], model)))
    assert without.preference_judge is None


@pytest.mark.parametrize(("picks", "expected"), [
    ("preferred", PreferenceCheck(True, True)),   # agrees
    ("rejected", PreferenceCheck(False, False)),  # disagrees
    ("A", PreferenceCheck(True, False)),          # always the first shown: position bias, neither
])
async def test_the_preference_judge_asks_both_orders_and_returns_a_typed_verdict(
        picks: str, expected: PreferenceCheck) -> None:
    def judge(req: ScriptedRequest) -> dict:
        content = req.messages[-1]["content"]
        if picks == "A":
            return {"better": "A"}
        preferred_is_a = content.index("PREF") < content.index("REJ")
        return {"better": "A" if preferred_is_a == (picks == "preferred") else "B"}

    model = ScriptedModel(judge)
    cfg = compose_config("generate", [])
    role = make_roles(cfg, {"preference_judge": model})["preference_judge"]
    verdict = await role(Persona(1, "a profile", "a personality"), [], "hello", "PREF reply", "REJ reply")
    assert verdict == expected
    assert len(model.requests) == 2
