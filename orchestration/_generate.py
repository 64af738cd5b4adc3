"""Growing preference trees: the tree environment, and the run that wires
it to the role actors (``_actors``) over the bus (``_bus``, messages in
``_messages``).

Start order: the store's writer (``Store.open``), then the actors (each
``await tg.start``), then the personas are fed in; shutdown runs the other
way: when every tree is complete or failed the bus closes, actors drain and
stop, and the store flushes. One persona's trip:

    TurnRequested ─▶ user ─▶ UserSpoke ─┬▶ inducer ─▶ PersonaInferred ─┬▶ preferred ─▶ ReplyReady ─┐
                                        └▶ rejected ─────────────────────────────────▶ ReplyReady ─┤
                                                                       └──────────────────────────▶ environment
    environment: node complete ─▶ (preference check) ─▶ commit ─▶ next TurnRequested | tree done

The rejected responder needs no persona, so it starts as soon as the user
has spoken: three sequential model hops per turn, not four.

Deadlock freedom with bounded inboxes: every cycle passes through the
environment's inbox, which is sized to the most messages that can be
outstanding towards it (in-flight nodes x 5; a node sends it at most four:
PersonaInferred, two ReplyReady and PreferenceChecked, a TreeFailed taking
the place of any of them), so publishing to it never waits; every other
inbox is bounded by its actor's concurrency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import structlog

from ..agents import TreeRoles, role_settings
from ..core import Settings, setting, to_settings
from ..core.errors import ConfigError
from ..environment import (
    MAX_TURNS,
    MODES,
    InferredPersona,
    Node,
    Persona,
    PreferenceCheck,
    TreePlan,
    TreeSpec,
)
from ..environment.store import Store, Trees
from ._actors import InducerActor, PreferenceJudgeActor, PreferredActor, RejectedActor, RoleActor, UserActor
from ._bus import Actor, Bus
from ._messages import (
    History,
    NodeRef,
    PersonaInferred,
    PreferenceChecked,
    PreferenceRequested,
    ReplyReady,
    ToEnvironment,
    TreeFailed,
    TurnRequested,
)

log = structlog.get_logger(__name__)

ROLES = ("user", "inducer", "preferred", "rejected")


@dataclass(frozen=True)
class GenerationSettings(Settings):
    """The ``generation`` config group: how many trees, how deep, how they branch."""

    trees: int = setting(8, help="number of trees (one per persona) in this run", ge=1, le=10_000_000)
    turns: int = setting(10, help="K: turns per conversation (paper: up to 10)", ge=1, le=MAX_TURNS)
    mode: str = setting("path", help="path = the paper (one continued branch, a pair per turn) | full = continue "
                                     "both branches", choices=MODES)
    node_budget: int = setting(64, help="full mode: max nodes per tree", ge=1, le=100_000)
    max_trees_in_flight: int = setting(1024, help="trees being grown at once (backpressure bound for the whole "
                                                  "pipeline)", ge=1, le=100_000)
    preference_check: bool = setting(False, help="ask a judge with the full persona to compare p_i and r_i in "
                                                 "both orders")
    swap_on_disagree: bool = setting(False, help="with preference_check: swap p_i and r_i when the judge "
                                                 "disagrees in both orders")
    shard: str | None = setting(None, help="\"I/N\": this process grows its share of the personas (stable hash); "
                                           "null = all", allowed="null or I/N with 0 <= I < N, e.g. 0/4")
    split: str = setting("train", help="persona split the trees are grown from", choices=("train", "eval"))
    progress: str = setting("auto", help="auto (live display on a TTY, log lines otherwise) | live | log | off",
                            choices=("auto", "live", "log", "off"))
    progress_interval: float = setting(5.0, help="seconds between progress log lines", gt=0, le=86_400)
    workers: int | None = setting(None, help="worker processes growing the trees (each its own event loop, disjoint "
                                             "trees, one database); null = auto: the cores, one per 64 trees to "
                                             "grow; 1 = one process", ge=1, le=1024, allowed="null or 1..1024")
    engine: str = setting("local", help="local = this machine (generation.workers processes) | ray = Ray tasks on "
                                        "a cluster, one shard database each, merged into db", choices=("local", "ray"))
    ray_address: str | None = setting(None, help="engine=ray: the cluster to join (e.g. ray://head:10001 or auto); "
                                                 "null = start a local Ray")
    estimate: bool = setting(False, help="print the number of LLM calls and a token estimate (from the prompts' "
                                         "lengths and the max_tokens limits) before the first call "
                                         "(experiment=paper: true)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shard is not None and self.shard_index is None:
            raise ConfigError("shard", self.shard, "null or I/N with 0 <= I < N, e.g. 0/4")

    @property
    def shard_index(self) -> tuple[int, int] | None:
        """``(I, N)`` of ``shard`` (None when unset or malformed)."""
        try:
            i, n = (int(x) for x in str(self.shard).split("/"))
        except ValueError:
            return None
        return (i, n) if 0 <= i < n else None

    @classmethod
    def from_config(cls, g: Any) -> GenerationSettings:
        return to_settings(g, cls, "generation")


@dataclass
class TreeJob:
    tree_id: int
    persona: Persona
    seed: int


@dataclass
class Progress:
    trees_total: int = 0
    trees_done: int = 0
    trees_failed: int = 0
    nodes: int = 0
    started: float = field(default_factory=time.monotonic)
    failures: list[dict[str, Any]] = field(default_factory=list)
    judge_agree: int = 0
    judge_disagree: int = 0
    judge_total: int = 0


@dataclass
class _Partial:
    """A node being made: filled in as its messages arrive, in any order."""

    node: NodeRef
    history: History = ()
    message: str = ""
    inferred: InferredPersona | None = None
    preferred: str | None = None
    rejected: str | None = None
    judge: PreferenceCheck | None = None
    judging: bool = False


class TreeEnvironment:
    """Owns the trees being grown: applies results, commits nodes, asks for the next ones."""

    def __init__(self, bus: Bus, store: Store, settings: GenerationSettings, progress: Progress) -> None:
        self.bus, self.store, self.settings, self.progress = bus, store, settings, progress
        self.plans: dict[int, TreePlan] = {}
        self.personas: dict[int, Persona] = {}
        self.partial: dict[tuple[int, str], _Partial] = {}
        self.failed: set[int] = set()
        self.slots = anyio.Semaphore(settings.max_trees_in_flight)
        self.all_done = anyio.Event()
        self._remaining = 0

    def actor(self) -> Actor[ToEnvironment]:
        """Subscribe the environment's inbox and give its runner. The inbox
        holds the most messages that can be outstanding towards it (in-flight
        nodes x 5; see the module docstring), so publishing to it never waits."""
        s = self.settings
        per_node = 1 if s.mode == "path" else s.node_budget
        inbox = self.bus.subscribe_many((PersonaInferred, ReplyReady, PreferenceChecked, TreeFailed),
                                        s.max_trees_in_flight * per_node * 5 + 16)
        return Actor("environment", inbox, self.handle, concurrency=max(8, min(256, s.max_trees_in_flight)))

    # -- feeding ---------------------------------------------------------
    async def feed(self, jobs: list[TreeJob]) -> None:
        self._remaining = len(jobs)
        if not jobs:
            self.all_done.set()
        for job in jobs:
            await self.slots.acquire()
            nodes = await self.store.read(lambda c, t=job.tree_id: Trees(c).nodes(t))
            plan = TreePlan(TreeSpec(job.tree_id, job.seed, self.settings.turns, self.settings.mode,
                                     self.settings.node_budget), nodes)
            self.plans[job.tree_id] = plan
            self.personas[job.tree_id] = job.persona
            # queued, not awaited: the writer applies it before this tree's first node, and a
            # commit round trip per tree would hold back every later tree's start
            await self.store.submit(lambda c, t=job.tree_id: Trees(c).start(t), what="a tree's status")
            await self._advance(job.tree_id)

    async def _advance(self, tree_id: int) -> None:
        plan = self.plans[tree_id]
        wanted = plan.frontier()
        plan.pending.update(wanted)  # before any await: no branch is asked for twice
        for branch in wanted:
            history = tuple(m.as_dict() for m in plan.history(branch).messages)
            node = NodeRef(tree_id, plan.turn_of(branch), branch, plan.spec.seed)
            await self.bus.publish(TurnRequested(node, self.personas[tree_id], history))
        if not wanted and plan.complete():
            await self.store.write(lambda c: Trees(c).complete(tree_id))
            self.progress.trees_done += 1
            self._release(tree_id)

    def wave_size(self) -> int:
        """How many trees are in flight (or about to be): a full turn wave of a batch backend."""
        return max(1, min(self.settings.max_trees_in_flight, self._remaining))

    def _release(self, tree_id: int) -> None:
        self.plans.pop(tree_id, None)
        self.personas.pop(tree_id, None)
        self.slots.release()
        self._remaining -= 1
        if self._remaining == 0:
            self.all_done.set()

    # -- results ---------------------------------------------------------
    async def handle(self, msg: ToEnvironment) -> None:
        """Fill in the node the message is about; once it is whole, have it
        judged (when the check is on), then commit it."""
        if isinstance(msg, TreeFailed):
            await self._fail(msg)
            return
        ref = msg.node
        if ref.tree_id in self.failed or ref.tree_id not in self.plans:
            return
        key = (ref.tree_id, ref.branch)
        part = self.partial.get(key)
        if part is None:
            part = self.partial[key] = _Partial(ref)
        match msg:
            case PersonaInferred(history=history, message=message, inferred=inferred):
                part.history, part.message, part.inferred = history, message, inferred
            case ReplyReady(kind="preferred", text=text):
                part.preferred = text
            case ReplyReady(text=text):
                part.rejected = text
            case PreferenceChecked(verdict=verdict):
                part.judge = verdict
        if part.inferred is None or part.preferred is None or part.rejected is None:
            return
        if self.settings.preference_check and part.judge is None:
            if not part.judging:
                part.judging = True
                await self.bus.publish(PreferenceRequested(ref, self.personas[ref.tree_id], part.history,
                                                           part.message, part.preferred, part.rejected))
            return
        del self.partial[key]
        await self._commit(part)

    async def _commit(self, part: _Partial) -> None:
        ref = part.node
        plan = self.plans[ref.tree_id]
        preferred, rejected, judge = part.preferred, part.rejected, part.judge
        if judge is not None:
            self.progress.judge_total += 1
            self.progress.judge_agree += int(judge.agrees)
            self.progress.judge_disagree += int(judge.disagrees)
            if self.settings.swap_on_disagree and judge.disagrees:
                preferred, rejected = rejected, preferred
                judge = replace(judge, swapped=True)
        node = Node(tree_id=ref.tree_id, turn=ref.turn, branch=ref.branch, user_message=part.message,
                    inferred=part.inferred or InferredPersona(), preferred=preferred or "", rejected=rejected or "",
                    continued=plan.continued_of(ref.branch), judge=judge)
        node_id = await self.store.write(lambda c: Trees(c).insert_node(node))
        if ref.tree_id in self.failed or ref.tree_id not in self.plans:
            return
        plan.add(replace(node, id=node_id))
        self.progress.nodes += 1
        await self._advance(ref.tree_id)

    async def _fail(self, msg: TreeFailed) -> None:
        if msg.tree_id in self.failed or msg.tree_id not in self.plans:
            return
        self.failed.add(msg.tree_id)
        reason = f"{msg.role} at branch {msg.node.branch!r}: {msg.reason}"
        for key in [k for k in self.partial if k[0] == msg.tree_id]:
            del self.partial[key]
        await self.store.write(lambda c: Trees(c).fail(msg.tree_id, reason))
        log.warning("tree.failed", tree_id=msg.tree_id, reason=reason)
        self.progress.trees_failed += 1
        self.progress.failures.append({"tree_id": msg.tree_id, "reason": reason})
        self._release(msg.tree_id)


def _concurrency(cfg: Any, role: str) -> int:
    return role_settings(cfg, role).concurrency


async def grow_trees(store: Store, run_id: int | None, jobs: list[TreeJob], roles: TreeRoles,
                     settings: GenerationSettings, cfg: Any, progress: Progress | None = None,
                     *, on_started: Any = None) -> Progress:
    """Grow every tree in ``jobs`` to completion (or failure) through the actors."""
    progress = progress or Progress(trees_total=len(jobs))
    bus = Bus(store, run_id)
    env = TreeEnvironment(bus, store, settings, progress)
    conc = {r: _concurrency(cfg, r) for r in (*ROLES, "preference_judge")}
    # subscription order is delivery order: UserSpoke reaches the inducer before the rejected responder
    role_actors: list[RoleActor[Any, Any]] = [
        UserActor(roles.user, bus, run_id), InducerActor(roles.inducer, bus, run_id),
        RejectedActor(roles.rejected, bus, run_id), PreferredActor(roles.preferred, bus, run_id),
    ]
    if settings.preference_check:
        if roles.preference_judge is None:
            raise ConfigError("agents.preference_judge", None, "a preference judge role (generation.preference_check)")
        role_actors.append(PreferenceJudgeActor(roles.preference_judge, bus, run_id))
    for actor in role_actors:  # batch mode: every tree in flight can be in a wave at once (agents.gateway.batch)
        model = getattr(actor.role, "model", None)
        if getattr(model, "collects_waves", False):
            conc[actor.name] = max(conc[actor.name], settings.max_trees_in_flight)
            model.expected = env.wave_size
    actors: list[Actor[Any]] = [env.actor(), *(actor.actor(conc[actor.name]) for actor in role_actors)]

    async with anyio.create_task_group() as tg:
        for actor in actors:
            await tg.start(actor.run)
        async with anyio.create_task_group() as side:
            if on_started is not None:
                side.start_soon(on_started, progress, actors)
            await env.feed(jobs)
            await env.all_done.wait()
            side.cancel_scope.cancel()
        await bus.aclose()
    if bus.dropped:
        log.info("generate.late_results_dropped", messages=bus.dropped)
    return progress
