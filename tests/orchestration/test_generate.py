"""Growing trees with scripted models: node structure, turn ordering,
concurrency (per turn and per role), failure isolation and retry, full mode,
the preference check, the events table, the information-flow contract and
sharding. Everything goes through ``grow_trees`` with real roles
(``make_roles``), a real SQLite store and the composed ``generate`` config;
only the model is scripted."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing

from aloesim.agents import TreeRoles, make_roles
from aloesim.agents.testing import ScriptedModel, ScriptedRequest
from aloesim.core.errors import ConfigError
from aloesim.environment import Persona, continued_choice
from aloesim.environment.store import Store, connect
from aloesim.orchestration import compose_config
from aloesim.orchestration._generate import ROLES, GenerationSettings, Progress, grow_trees
from aloesim.orchestration._generate_run import select_trees
from aloesim.orchestration._runs import find_or_create_run

pytestmark = pytest.mark.anyio


# -- helpers ------------------------------------------------------------------

def persona_texts(i: int) -> tuple[str, str]:
    return (f"I am lighthouse keeper number {i} on a windy northern island and I solve crosswords.",
            f"Dry humour number {i}, speaks in clipped sentences, distrusts small talk.")


def persona_fragments(p: Persona) -> list[str]:
    """Pieces of the full persona no persona-free request may contain."""
    return [p.profile, p.personality, "lighthouse keeper", "windy northern island", "Dry humour", "clipped sentences"]


def add_personas(db: Path, n: int, *, split: str = "train", order: list[int] | None = None) -> None:
    conn = connect(db, create=True)
    with conn:
        conn.execute("BEGIN")
        for i in order if order is not None else range(n):
            profile, personality = persona_texts(i)
            a = conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at)"
                             " VALUES ('profile', ?, ?, 'seed', 0)", (split, profile)).lastrowid
            b = conn.execute("INSERT INTO persona_items (kind, split, text, source, created_at)"
                             " VALUES ('personality', ?, ?, 'seed', 0)", (split, personality)).lastrowid
            conn.execute("INSERT INTO personas (profile_id, personality_id, split, created_at) VALUES (?,?,?,0)",
                         (a, b, split))
        conn.execute("COMMIT")
    conn.close()


def cfg_for(db: Path, *overrides: str):
    return compose_config("generate", [f"db={db}", "generation.progress=off", *overrides])


def tag(req: ScriptedRequest) -> str:
    return f"{req.context.tree_id}:{req.context.branch}"


@dataclass
class Script:
    """Answers every role by what the request says (tree, turn, branch in the
    call context). ``fail(req)`` returning a message makes that call fail."""

    db: Path | None = None
    fail: Any = None
    judge: str = "follow"           # follow = always pick the preferred reply; oppose = the rejected one
    barrier: bool = False           # preferred and rejected of a node wait for each other
    pair_peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _in_pair: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _met: dict[str, anyio.Event] = field(default_factory=dict)
    parent_missing: list[str] = field(default_factory=list)

    async def __call__(self, req: ScriptedRequest) -> Any:
        if self.fail is not None and (reason := self.fail(req)):
            return RuntimeError(reason)
        t = tag(req)
        if req.role == "user":
            if self.db is not None and req.context.branch:
                # the environment must have COMMITTED the parent before asking for this turn
                with sqlite3.connect(self.db) as conn:
                    row = conn.execute("SELECT 1 FROM nodes WHERE tree_id = ? AND branch = ?",
                                       (req.context.tree_id, req.context.branch[:-1])).fetchone()
                if row is None:
                    self.parent_missing.append(t)
            return f"*waves* user message of turn {req.context.turn} [{t}]"
        if req.role == "inducer":
            return {"profile": f"inferred-profile [{t}]", "personalities": f"inferred-trait [{t}]"}
        if req.role in ("preferred", "rejected"):
            if self.barrier:
                self._in_pair[t] += 1
                self.pair_peak[t] = max(self.pair_peak[t], self._in_pair[t])
                met = self._met.setdefault(t, anyio.Event())
                if self._in_pair[t] == 2:
                    met.set()
                with anyio.move_on_after(5):
                    await met.wait()
                self._in_pair[t] -= 1
            return ("PREF" if req.role == "preferred" else "REJ") + f"[{t}]"
        if req.role == "preference_judge":
            content = req.messages[-1]["content"]
            pa, rb = content.index(f"PREF[{t}]"), content.index(f"REJ[{t}]")
            preferred_is_a = pa < rb
            pick_preferred = self.judge == "follow"
            return {"better": "A" if preferred_is_a == pick_preferred else "B"}
        raise AssertionError(f"unexpected role {req.role}")


def scripted_roles(cfg, script: Script, *, per_role: bool = False, delay: float | dict[str, float] = 0.0):
    names = [*ROLES, "preference_judge"]
    if per_role:
        delays = delay if isinstance(delay, dict) else dict.fromkeys(names, delay)
        models = {r: ScriptedModel(script, name=r, delay=delays.get(r, 0.0)) for r in names}
    else:
        one = ScriptedModel(script, delay=delay)
        models = {r: one for r in names}
    return TreeRoles.from_roles(make_roles(cfg, models)), models


async def grow(db: Path, cfg, script: Script, *, per_role: bool = False,
               delay: float | dict[str, float] = 0.0) -> tuple[Progress, dict[str, ScriptedModel], int]:
    settings = GenerationSettings.from_config(cfg.generation)
    async with Store.open(db) as store:
        run_id, _ = await find_or_create_run(store, "generate", cfg)
        jobs, _ = await select_trees(store, run_id, settings, int(cfg.seed), bool(cfg.retry_failed))
        roles, models = scripted_roles(cfg, script, per_role=per_role, delay=delay)
        with anyio.fail_after(60):
            progress = await grow_trees(store, run_id, jobs, roles, settings, cfg)
    return progress, models, run_id


def tree_rows(db: Path) -> list[sqlite3.Row]:
    return connect(db).execute(
        "SELECT t.*, a.text AS profile, b.text AS personality FROM trees t JOIN personas p ON p.id = t.persona_id"
        " JOIN persona_items a ON a.id = p.profile_id JOIN persona_items b ON b.id = p.personality_id"
        " ORDER BY t.id").fetchall()


def nodes_of(db: Path, tree_id: int) -> dict[str, sqlite3.Row]:
    rows = connect(db).execute("SELECT * FROM nodes WHERE tree_id = ? ORDER BY id", (tree_id,)).fetchall()
    return {r["branch"]: r for r in rows}


def all_requests(models: dict[str, ScriptedModel]) -> list[ScriptedRequest]:
    seen: dict[int, ScriptedModel] = {id(m): m for m in models.values()}
    return [r for m in seen.values() for r in m.requests]


# -- node structure and ordering ---------------------------------------------

async def test_path_trees_have_one_node_per_turn_with_the_paper_fields(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 4)
    cfg = cfg_for(db, "generation.trees=4", "generation.turns=4")
    script = Script(db=db)
    progress, _, _ = await grow(db, cfg, script)
    assert (progress.trees_done, progress.trees_failed, progress.nodes) == (4, 0, 16)
    assert script.parent_missing == []  # every turn was asked for after its parent was committed
    trees = tree_rows(db)
    assert [t["status"] for t in trees] == ["complete"] * 4
    for t in trees:
        nodes = nodes_of(db, t["id"])
        assert len(nodes) == 4
        branch = ""
        for turn in range(1, 5):
            n = nodes[branch]
            key = f"{t['id']}:{branch}"
            assert n["turn"] == turn
            assert n["user_message"] == f"user message of turn {turn} [{key}]"  # stage direction removed
            assert (n["inferred_profile"], n["inferred_personalities"]) == (f"inferred-profile [{key}]",
                                                                             f"inferred-trait [{key}]")
            assert (n["preferred"], n["rejected"]) == (f"PREF[{key}]", f"REJ[{key}]")
            assert n["continued"] == continued_choice(t["seed"], branch)  # the seeded coin
            assert n["parent_id"] == (nodes[branch[:-1]]["id"] if branch else None)
            branch += "p" if n["continued"] == "preferred" else "r"
    assert {n["continued"] for t in trees for n in nodes_of(db, t["id"]).values()} == {"preferred", "rejected"}


async def test_each_turn_sees_the_committed_history_of_the_previous_ones(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 2)
    cfg = cfg_for(db, "generation.trees=2", "generation.turns=3")
    _, models, _ = await grow(db, cfg, Script(db=db))
    requests = all_requests(models)
    for t in tree_rows(db):
        nodes = nodes_of(db, t["id"])
        for branch in nodes:
            if not branch:
                continue
            parent = nodes[branch[:-1]]
            reply = parent["preferred"] if branch[-1] == "p" else parent["rejected"]
            user_req = next(r for r in requests if r.role == "user" and tag(r) == f"{t['id']}:{branch}")
            # the role-player sees the chat flipped: its own messages are 'assistant'
            assert user_req.messages[-2:] == [{"role": "assistant", "content": parent["user_message"]},
                                              {"role": "user", "content": reply}]
            for role in ("rejected", "preferred"):
                req = next(r for r in requests if r.role == role and tag(r) == f"{t['id']}:{branch}")
                assert {"role": "assistant", "content": reply} in req.messages
                assert {"role": "user", "content": parent["user_message"]} in req.messages


async def test_preferred_and_rejected_of_a_turn_run_concurrently(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    cfg = cfg_for(db, "generation.trees=3", "generation.turns=2")
    script = Script(barrier=True)
    progress, _, _ = await grow(db, cfg, script)
    assert progress.trees_done == 3 and progress.nodes == 6
    # each node's two replies were in flight at the same moment (else the barrier would wait 5 s per node)
    assert len(script.pair_peak) == 6 and set(script.pair_peak.values()) == {2}


async def test_each_role_keeps_exactly_its_own_concurrency_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 24)
    limits = {"user": 3, "inducer": 2, "preferred": 4, "rejected": 5}
    cfg = cfg_for(db, "generation.trees=24", "generation.turns=2",
                  *(f"agents.{r}.concurrency={n}" for r, n in limits.items()))
    # downstream roles are slower than what feeds them, so every role's inbox backs up
    delays = {"user": 0.01, "inducer": 0.01, "preferred": 0.05, "rejected": 0.05}
    progress, models, _ = await grow(db, cfg, Script(), per_role=True, delay=delays)
    assert progress.trees_done == 24
    assert {r: models[r].peak_in_flight for r in limits} == limits


async def test_trees_in_flight_are_bounded(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 10)
    cfg = cfg_for(db, "generation.trees=10", "generation.turns=2", "generation.max_trees_in_flight=2")
    progress, models, _ = await grow(db, cfg, Script(), per_role=True, delay=0.01)
    assert progress.trees_done == 10
    assert models["user"].peak_in_flight <= 2 and models["rejected"].peak_in_flight <= 2


# -- failures ----------------------------------------------------------------

async def test_a_failed_call_fails_only_its_tree_and_retry_failed_picks_it_up(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 4)
    cfg = cfg_for(db, "generation.trees=4", "generation.turns=3")
    victim = persona_texts(2)[0]

    def outage(req: ScriptedRequest) -> str | None:
        if req.role == "user" and req.context.turn == 2 and victim in req.messages[0]["content"]:
            return "scripted outage"
        return None

    progress, _, run_id = await grow(db, cfg, Script(fail=outage))
    assert (progress.trees_done, progress.trees_failed) == (3, 1)
    trees = {t["profile"]: t for t in tree_rows(db)}
    bad = trees[victim]
    assert bad["status"] == "failed"
    assert re.fullmatch(r"user at branch '[pr]': scripted outage", bad["error"])  # turn 2: one letter
    assert len(nodes_of(db, bad["id"])) == 1  # turn 1 stays committed
    assert all(t["status"] == "complete" and len(nodes_of(db, t["id"])) == 3
               for p, t in trees.items() if p != victim)
    assert progress.failures == [{"tree_id": bad["id"], "reason": bad["error"]}]
    first_id = nodes_of(db, bad["id"])[""]["id"]

    # the same command again leaves a failed tree alone ...
    progress, _, again = await grow(db, cfg, Script())
    assert again == run_id and progress.trees_total == 0 and progress.nodes == 0
    # ... and retry_failed=true continues it from its committed node
    progress, models, again = await grow(db, cfg_for(db, "generation.trees=4", "generation.turns=3",
                                                     "retry_failed=true"), Script())
    assert again == run_id
    assert (progress.trees_done, progress.trees_failed, progress.nodes) == (1, 0, 2)
    row = connect(db).execute("SELECT status, error FROM trees WHERE id = ?", (bad["id"],)).fetchone()
    assert tuple(row) == ("complete", None)
    nodes = nodes_of(db, bad["id"])
    assert len(nodes) == 3 and nodes[""]["id"] == first_id
    assert not any(r.context.branch == "" for r in models["user"].requests)  # turn 1 was not asked again


async def test_a_failure_in_the_reply_roles_also_fails_only_that_tree(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    cfg = cfg_for(db, "generation.trees=3", "generation.turns=2")
    victim_tree: list[int] = []

    def outage(req: ScriptedRequest) -> str | None:
        if req.role == "preferred" and req.context.turn == 1:
            if not victim_tree:
                victim_tree.append(req.context.tree_id)
            if req.context.tree_id == victim_tree[0]:
                return "refused"
        return None

    progress, _, _ = await grow(db, cfg, Script(fail=outage))
    assert (progress.trees_done, progress.trees_failed) == (2, 1)
    status = {t["id"]: (t["status"], t["error"]) for t in tree_rows(db)}
    assert status[victim_tree[0]] == ("failed", "preferred at branch '': refused")
    assert not nodes_of(db, victim_tree[0])  # a half-done node is never committed


async def test_a_bug_in_a_role_fails_its_tree_by_name_and_the_run_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    cfg = cfg_for(db, "generation.trees=3", "generation.turns=2")
    victim = persona_texts(1)[0]

    class Buggy(Script):
        async def __call__(self, req: ScriptedRequest) -> Any:
            if req.role == "inducer" and victim in req.messages[0]["content"]:
                raise TypeError("unhashable type: 'list'")  # not an LLMError: a bug
            return await super().__call__(req)

    progress, _, _ = await grow(db, cfg, Buggy())
    assert (progress.trees_done, progress.trees_failed) == (2, 1)
    trees = {t["profile"]: t for t in tree_rows(db)}
    assert tuple(trees[victim][k] for k in ("status", "error")) == (
        "failed", "inducer at branch '': internal error: TypeError: unhashable type: 'list'")
    assert all(t["status"] == "complete" for p, t in trees.items() if p != victim)


async def test_a_reply_that_comes_back_after_its_tree_failed_and_the_run_ended_is_dropped(tmp_path: Path) -> None:
    """The inducer fails at once while the rejected reply of the same node is still being made: the
    (only) tree fails, so the run ends and the bus closes before that reply comes back. The late
    reply is about a tree that is over: it is dropped, and the run ends cleanly."""
    db = tmp_path / "g.db"
    add_personas(db, 1)
    cfg = cfg_for(db, "generation.trees=1", "generation.turns=2")

    def outage(req: ScriptedRequest) -> str | None:
        return "refused" if req.role == "inducer" else None

    with structlog.testing.capture_logs() as logs:
        progress, models, run_id = await grow(db, cfg, Script(fail=outage), per_role=True, delay={"rejected": 0.3})
    assert (progress.trees_done, progress.trees_failed) == (0, 1)
    assert [e["messages"] for e in logs if e["event"] == "generate.late_results_dropped"] == [1]
    assert len(models["rejected"].requests) == 1  # the late reply was made ...
    kinds = [r[0] for r in connect(db).execute("SELECT kind FROM events WHERE run_id = ? ORDER BY id", (run_id,))]
    assert kinds == ["TurnRequested", "UserSpoke", "TreeFailed"]  # ... and dropped, not recorded
    (t,) = tree_rows(db)
    assert (t["status"], t["error"]) == ("failed", "inducer at branch '': refused")


# -- full mode ----------------------------------------------------------------

async def test_full_mode_grows_both_branches_up_to_the_node_budget(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    cfg = cfg_for(db, "generation.trees=3", "generation.turns=3", "generation.mode=full", "generation.node_budget=5")
    progress, _, _ = await grow(db, cfg, Script(db=db))
    assert progress.trees_done == 3 and progress.nodes == 15
    for t in tree_rows(db):
        assert t["status"] == "complete" and t["mode"] == "full"
        nodes = nodes_of(db, t["id"])
        assert set(nodes) == {"", "p", "r", "pp", "pr"}  # breadth first, cut at the budget
        assert all(n["continued"] == "both" for n in nodes.values())
        # the 'r' child continues the rejected reply of the root, the 'p' child the preferred one
        assert nodes["p"]["parent_id"] == nodes["r"]["parent_id"] == nodes[""]["id"]


async def test_full_mode_without_a_binding_budget_grows_the_whole_binary_tree(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 1)
    cfg = cfg_for(db, "generation.trees=1", "generation.turns=3", "generation.mode=full")
    _, models, _ = await grow(db, cfg, Script())
    (t,) = tree_rows(db)
    assert set(nodes_of(db, t["id"])) == {"", "p", "r", "pp", "pr", "rp", "rr"}
    rr = next(r for r in models["user"].requests if r.context.branch == "rr")
    assert rr.messages[-1]["content"] == f"REJ[{t['id']}:r]"


# -- the preference check ------------------------------------------------------

@pytest.mark.parametrize(("judge", "swap"), [("follow", False), ("oppose", False), ("oppose", True)])
async def test_preference_check_asks_both_orders_and_reports_agreement(tmp_path: Path, judge: str, swap: bool) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 2)
    cfg = cfg_for(db, "generation.trees=2", "generation.turns=2", "generation.preference_check=true",
                  f"generation.swap_on_disagree={str(swap).lower()}")
    progress, models, _ = await grow(db, cfg, Script(judge=judge))
    assert progress.judge_total == 4
    assert progress.judge_agree == (4 if judge == "follow" else 0)
    assert progress.judge_disagree == (0 if judge == "follow" else 4)
    judged = [r for r in all_requests(models) if r.role == "preference_judge"]
    assert len(judged) == 8
    for t in tree_rows(db):
        for branch, n in nodes_of(db, t["id"]).items():
            key = f"{t['id']}:{branch}"
            asks = [r.messages[-1]["content"] for r in judged if tag(r) == key]
            orders = sorted(c.index(f"PREF[{key}]") < c.index(f"REJ[{key}]") for c in asks)
            assert orders == [False, True]  # preferred shown first once, second once
            verdict = json.loads(n["judge"])
            assert verdict["agrees"] is (judge == "follow") and verdict["disagrees"] is (judge == "oppose")
            swapped = judge == "oppose" and swap
            assert verdict.get("swapped", False) is swapped
            assert n["preferred"] == (f"REJ[{key}]" if swapped else f"PREF[{key}]")
            assert n["rejected"] == (f"PREF[{key}]" if swapped else f"REJ[{key}]")


# -- events -----------------------------------------------------------------

async def test_every_bus_message_is_in_the_events_table(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    cfg = cfg_for(db, "generation.trees=3", "generation.turns=3", "generation.preference_check=true")
    _, _, run_id = await grow(db, cfg, Script())
    conn = connect(db)
    kinds = Counter(r[0] for r in conn.execute("SELECT kind FROM events WHERE run_id = ?", (run_id,)))
    nodes = conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
    assert nodes == 9
    assert kinds == {"TurnRequested": 9, "UserSpoke": 9, "PersonaInferred": 9, "ReplyReady": 18,
                     "PreferenceRequested": 9, "PreferenceChecked": 9}
    # a tree's history can be replayed from its events
    for t in tree_rows(db):
        events = [json.loads(r[0]) for r in conn.execute(
            "SELECT payload FROM events WHERE tree_id = ? AND kind = 'ReplyReady' ORDER BY id", (t["id"],))]
        for branch, n in nodes_of(db, t["id"]).items():
            texts = {e["kind"]: e["text"] for e in events if e["branch"] == branch}
            assert texts == {"preferred": n["preferred"], "rejected": n["rejected"]}


# -- information flow ----------------------------------------------------------

async def test_information_flow_contract_from_the_recorded_requests(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    add_personas(db, 3)
    cfg = cfg_for(db, "generation.trees=3", "generation.turns=3", "generation.preference_check=true")
    _, models, _ = await grow(db, cfg, Script(), per_role=True)
    personas = {t["id"]: Persona(t["persona_id"], t["profile"], t["personality"]) for t in tree_rows(db)}
    all_fragments = [f for p in personas.values() for f in persona_fragments(p)]

    def text(req: ScriptedRequest) -> str:
        return "\n".join(m["content"] for m in req.messages)

    # who must see the persona does see it (so the checks below could fail)
    for role in ("user", "inducer", "preference_judge"):
        assert models[role].requests
        for req in models[role].requests:
            p = personas[req.context.tree_id]
            assert p.profile in text(req) and p.personality in text(req)
    # the rejected responder never sees any persona text
    assert len(models["rejected"].requests) == 9
    for req in models["rejected"].requests:
        assert not [f for f in all_fragments if f in text(req)]
        assert "inferred-" not in text(req)
    # the preferred responder sees the inferred persona, never the full one
    assert len(models["preferred"].requests) == 9
    for req in models["preferred"].requests:
        assert not [f for f in all_fragments if f in text(req)]
        assert f"inferred-profile [{tag(req)}]" in text(req)
        assert f"inferred-trait [{tag(req)}]" in text(req)


# -- sharding ----------------------------------------------------------------

async def _shard_personas(db: Path, shard: str | None, trees: int) -> set[tuple[str, str]]:
    overrides = [f"generation.trees={trees}"] + ([f"generation.shard={shard}"] if shard else [])
    cfg = cfg_for(db, *overrides)
    settings = GenerationSettings.from_config(cfg.generation)
    async with Store.open(db) as store:
        run_id, _ = await find_or_create_run(store, "generate", cfg)
        jobs, _ = await select_trees(store, run_id, settings, int(cfg.seed), False)
    return {(j.persona.profile, j.persona.personality) for j in jobs}


async def test_shards_partition_the_personas(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    add_personas(db, 30)
    everyone = await _shard_personas(db, None, 1000)
    assert len(everyone) == 30
    shards = [await _shard_personas(db, f"{i}/3", 1000) for i in range(3)]
    assert all(shards)  # 30 personas over 3 shards: none is empty
    assert set().union(*shards) == everyone
    assert sum(len(s) for s in shards) == 30  # disjoint
    # stable: the same texts stored in another order (other ids) land in the same shards
    other = tmp_path / "other.db"
    add_personas(other, 30, order=list(reversed(range(30))))
    assert [await _shard_personas(other, f"{i}/3", 1000) for i in range(3)] == shards


async def test_a_shard_takes_trees_from_its_share_only(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    add_personas(db, 30)
    share = await _shard_personas(db, "1/3", 1000)
    few = await _shard_personas(db, "1/3", 3)
    assert len(few) == 3 and few <= share


@pytest.mark.parametrize("shard", ["3/3", "-1/2", "1", "a/b", "1/0"])
def test_bad_shard_is_a_config_error(shard: str) -> None:
    with pytest.raises(ConfigError) as info:
        GenerationSettings.from_config(compose_config("generate", [f"generation.shard='{shard}'"]).generation)
    assert info.value.key == "generation.shard"


@pytest.mark.parametrize(("override", "key"), [
    ("generation.shard=5/3", "generation.shard"),
    ("generation.mode=bushy", "generation.mode"),
    ("generation.turns=0", "generation.turns"),
    ("agents.rejected.concurrency=0", "agents.rejected.concurrency"),
    ("agents.preferred.temperature=3", "agents.preferred.temperature"),
])
def test_bad_generate_config_fails_before_the_database_is_touched(tmp_path: Path, override: str, key: str) -> None:
    from aloesim.orchestration.commands import generate as cmd

    db = tmp_path / "never.db"
    with pytest.raises(ConfigError) as info:
        cmd.run(cfg_for(db, override))
    assert info.value.key == key and "\n" not in str(info.value)
    assert not db.exists()


@pytest.mark.parametrize(("mode", "expected"), [("path", 4), ("full", 7)])
async def test_an_interrupted_run_resumes_from_the_committed_nodes(tmp_path: Path, mode: str, expected: int) -> None:
    """Cancel grow_trees in the middle (as Ctrl-C would), several times, then let it finish:
    no node is asked for twice once committed, none is lost, none is duplicated."""
    db = tmp_path / "g.db"
    add_personas(db, 5)
    turns = 4 if mode == "path" else 3
    cfg = cfg_for(db, "generation.trees=5", f"generation.turns={turns}", f"generation.mode={mode}")
    settings = GenerationSettings.from_config(cfg.generation)
    committed_before: list[int] = []
    asked_again: list[str] = []
    for attempt in range(4):
        conn = connect(db)
        done = {f"{r[0]}:{r[1]}" for r in conn.execute("SELECT tree_id, branch FROM nodes")}
        conn.close()
        committed_before.append(len(done))

        scope = anyio.CancelScope()
        calls: list[str] = []

        def script(req: ScriptedRequest, done=done, scope=scope, calls=calls, attempt=attempt) -> Any:
            if tag(req) in done:
                asked_again.append(tag(req))
            calls.append(tag(req))
            if attempt < 3 and len(calls) == (25 if attempt == 0 else 45):
                scope.cancel()  # interrupted in the middle of some turns
            return echo_reply(req)

        async with Store.open(db) as store:
            run_id, _ = await find_or_create_run(store, "generate", cfg)
            jobs, _ = await select_trees(store, run_id, settings, int(cfg.seed), False)
            roles, _ = scripted_roles(cfg, script, delay=0.01)
            with anyio.fail_after(60), scope:
                await grow_trees(store, run_id, jobs, roles, settings, cfg)
    assert committed_before == sorted(committed_before)
    assert 0 < committed_before[1] < committed_before[2] < 5 * expected, committed_before  # cut mid-growth twice
    assert asked_again == []
    trees = tree_rows(db)
    assert [t["status"] for t in trees] == ["complete"] * 5
    assert all(len(nodes_of(db, t["id"])) == expected for t in trees)
    conn = connect(db)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def echo_reply(req: ScriptedRequest) -> Any:
    if req.role == "inducer":
        return {"profile": f"p {tag(req)}", "personalities": None}
    return f"{req.role} {tag(req)}"
