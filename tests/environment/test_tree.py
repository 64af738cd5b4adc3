"""TreePlan: the pure rules of a preference tree (frontier, modes, budget, coin, history)."""

from __future__ import annotations

import pytest

from aloesim.environment import (
    InferredPersona,
    Node,
    TreePlan,
    TreeSpec,
    call_seed,
    continued_choice,
    stable_int,
)


def node(plan: TreePlan, branch: str) -> Node:
    """The node a model would produce at ``branch`` (texts name the branch)."""
    return Node(tree_id=plan.spec.tree_id, turn=plan.turn_of(branch), branch=branch, user_message=f"m[{branch}]",
                inferred=InferredPersona(), preferred=f"p[{branch}]", rejected=f"r[{branch}]",
                continued=plan.continued_of(branch))  # type: ignore[arg-type]


def grow(plan: TreePlan) -> list[str]:
    """Grow the plan to completion the way the environment does; returns the request order."""
    order: list[str] = []
    while True:
        wanted = plan.frontier()
        if not wanted:
            return order
        plan.pending.update(wanted)
        for branch in wanted:
            order.append(branch)
            plan.add(node(plan, branch))


def test_stable_int_is_stable_and_bounded() -> None:
    # fixed value: Python's salted hash() would change between processes
    assert stable_int("a", 1) == stable_int("a", 1)
    assert stable_int("a", 1) != stable_int("a", 2)
    assert stable_int("x", bits=8) < 256
    assert call_seed(5, "p", "user") < 2**31
    assert call_seed(5, "p", "user") != call_seed(5, "p", "rejected")


def test_coin_is_seeded_and_not_constant() -> None:
    coins = {continued_choice(seed, "") for seed in range(40)}
    assert coins == {"preferred", "rejected"}
    assert [continued_choice(7, b) for b in ("", "p", "pr")] == [continued_choice(7, b) for b in ("", "p", "pr")]


def test_path_mode_grows_one_branch_following_the_coin() -> None:
    plan = TreePlan(TreeSpec(tree_id=1, seed=11, turns=5))
    order = grow(plan)
    assert len(order) == 5 and plan.complete()
    for i, branch in enumerate(order):
        assert len(branch) == i
        if i:
            parent = plan.nodes[branch[:-1]]
            assert branch[-1] == {"preferred": "p", "rejected": "r"}[parent.continued]
    assert {n.continued for n in plan.nodes.values()} <= {"preferred", "rejected"}


def test_history_is_the_continued_conversation() -> None:
    plan = TreePlan(TreeSpec(tree_id=1, seed=3, turns=3))
    order = grow(plan)
    last = order[-1]
    msgs = plan.history(last).as_dicts()
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[0]["content"] == "m[]"
    first_reply = "p[]" if last[0] == "p" else "r[]"
    assert msgs[1]["content"] == first_reply
    assert msgs[2]["content"] == f"m[{last[:1]}]"
    assert plan.history("").messages == ()


@pytest.mark.parametrize(("turns", "budget", "expected"), [
    (3, 64, ["", "p", "r", "pp", "pr", "rp", "rr"]),
    (3, 5, ["", "p", "r", "pp", "pr"]),
    (4, 1, [""]),
])
def test_full_mode_grows_both_branches_breadth_first_within_budget(turns: int, budget: int,
                                                                     expected: list[str]) -> None:
    plan = TreePlan(TreeSpec(tree_id=1, seed=0, turns=turns, mode="full", node_budget=budget))
    assert grow(plan) == expected
    assert plan.complete()
    assert all(n.continued == "both" for n in plan.nodes.values())


def test_frontier_never_asks_twice_and_respects_pending_in_the_budget() -> None:
    plan = TreePlan(TreeSpec(tree_id=1, seed=0, turns=3, mode="full", node_budget=3))
    assert plan.frontier() == [""]
    plan.pending.add("")
    assert plan.frontier() == [] and not plan.complete()
    plan.add(node(plan, ""))
    assert plan.frontier() == ["p", "r"]
    plan.pending.update(["p", "r"])
    assert plan.frontier() == []
    plan.add(node(plan, "p"))
    assert plan.frontier() == []  # budget 3: '' + 'p' + pending 'r'
    plan.add(node(plan, "r"))
    assert plan.complete()


def test_a_restarted_plan_continues_from_the_committed_nodes() -> None:
    spec = TreeSpec(tree_id=9, seed=42, turns=4)
    full = TreePlan(spec)
    order = grow(full)
    # a new process loads the first two committed nodes: it asks for exactly the third
    restarted = TreePlan(spec, [full.nodes[b] for b in order[:2]])
    assert restarted.frontier() == [order[2]]
    assert grow(restarted) == order[2:]
    assert {b: n.user_message for b, n in restarted.nodes.items()} == {b: n.user_message for b, n in full.nodes.items()}
