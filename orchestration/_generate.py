"""Growing preference trees: the environment actor, the role actors, and
the run around them.

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
outstanding towards it (in-flight nodes x 5), so publishing to it never
waits; every other inbox is bounded by its actor's concurrency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import structlog

from ..agents.gateway import CallContext
from ..core.errors import ConfigError, LLMError
from ..environment import InferredPersona, Node, Persona, TreePlan, TreeSpec, call_seed
from ..environment.store import Store, insert_node, node_from_row
from ._bus import (
    Actor,
    Bus,
    PersonaInferred,
    PreferenceChecked,
    PreferenceRequested,
    ReplyReady,
    TreeFailed,
    TurnRequested,
    UserSpoke,
)

log = structlog.get_logger(__name__)

ROLES = ("user", "inducer", "preferred", "rejected")


@dataclass(frozen=True)
class GenerationSettings:
    trees: int = 8
    turns: int = 10
    mode: str = "path"
    node_budget: int = 64
    max_trees_in_flight: int = 1024
    preference_check: bool = False
    swap_on_disagree: bool = False
    shard: tuple[int, int] | None = None
    split: str = "train"
    progress: str = "auto"
    progress_interval: float = 5.0

    @classmethod
    def from_config(cls, g: Any) -> GenerationSettings:
        def intval(key: str, low: int) -> int:
            v = g.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"generation.{key}", v, f"an integer >= {low}")
            return v

        mode = g.get("mode", "path")
        if mode not in ("path", "full"):
            raise ConfigError("generation.mode", mode, "path | full")
        shard = g.get("shard")
        parsed_shard = None
        if shard is not None:
            try:
                i, n = (int(x) for x in str(shard).split("/"))
                if not 0 <= i < n:
                    raise ValueError
            except ValueError:
                raise ConfigError("generation.shard", shard, "I/N with 0 <= I < N, e.g. 0/4") from None
            parsed_shard = (i, n)
        split = g.get("split", "train")
        if split not in ("train", "eval"):
            raise ConfigError("generation.split", split, "train | eval")
        progress = g.get("progress", "auto")
        if progress not in ("auto", "live", "log", "off"):
            raise ConfigError("generation.progress", progress, "auto | live | log | off")
        return cls(
            trees=intval("trees", 1), turns=intval("turns", 1), mode=mode, node_budget=intval("node_budget", 1),
            max_trees_in_flight=intval("max_trees_in_flight", 1), preference_check=bool(g.get("preference_check")),
            swap_on_disagree=bool(g.get("swap_on_disagree")), shard=parsed_shard, split=split, progress=progress,
            progress_interval=float(g.get("progress_interval", 5)),
        )


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
    request: TurnRequested
    message: str
    inferred: InferredPersona | None = None
    preferred: str | None = None
    rejected: str | None = None
    judge: dict | None = None
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

    # -- feeding ---------------------------------------------------------
    async def feed(self, jobs: list[TreeJob]) -> None:
        self._remaining = len(jobs)
        if not jobs:
            self.all_done.set()
        for job in jobs:
            await self.slots.acquire()
            rows = await self.store.fetchall("SELECT * FROM nodes WHERE tree_id = ?", (job.tree_id,))
            plan = TreePlan(TreeSpec(job.tree_id, job.seed, self.settings.turns, self.settings.mode,
                                     self.settings.node_budget), [node_from_row(r) for r in rows])
            self.plans[job.tree_id] = plan
            self.personas[job.tree_id] = job.persona
            # queued, not awaited: the writer applies it before this tree's first node, and a
            # commit round trip per tree would hold back every later tree's start
            await self.store.submit(lambda c, t=job.tree_id: c.execute(
                "UPDATE trees SET status = 'running', error = NULL WHERE id = ?", (t,)), what="a tree's status")
            await self._advance(job.tree_id)

    async def _advance(self, tree_id: int) -> None:
        plan = self.plans[tree_id]
        wanted = plan.frontier()
        plan.pending.update(wanted)  # before any await: no branch is asked for twice
        for branch in wanted:
            history = tuple(m.as_dict() for m in plan.history(branch).messages)
            await self.bus.publish(TurnRequested(tree_id, plan.turn_of(branch), branch, plan.spec.seed,
                                                 self.personas[tree_id], history))
        if not wanted and plan.complete():
            await self.store.write(lambda c: c.execute(
                "UPDATE trees SET status = 'complete', finished_at = ? WHERE id = ?", (time.time(), tree_id)))
            self.progress.trees_done += 1
            self._release(tree_id)

    def _release(self, tree_id: int) -> None:
        self.plans.pop(tree_id, None)
        self.personas.pop(tree_id, None)
        self.slots.release()
        self._remaining -= 1
        if self._remaining == 0:
            self.all_done.set()

    # -- results ---------------------------------------------------------
    async def handle(self, msg: object) -> None:
        if isinstance(msg, TreeFailed):
            await self._fail(msg)
            return
        spoke: UserSpoke = msg.spoke  # type: ignore[attr-defined]
        req = spoke.request
        if req.tree_id in self.failed or req.tree_id not in self.plans:
            return
        key = (req.tree_id, req.branch)
        part = self.partial.get(key)
        if part is None:
            part = self.partial[key] = _Partial(req, spoke.message)
        if isinstance(msg, PersonaInferred):
            part = self.partial[key] = replace(part, inferred=msg.inferred)
        elif isinstance(msg, ReplyReady):
            part = self.partial[key] = replace(part, **{msg.kind: msg.text})
        elif isinstance(msg, PreferenceChecked):
            part = self.partial[key] = replace(part, judge=msg.verdict)
        if part.inferred is None or part.preferred is None or part.rejected is None:
            return
        if self.settings.preference_check and part.judge is None:
            if not part.judging:
                self.partial[key] = replace(part, judging=True)
                await self.bus.publish(PreferenceRequested(spoke, part.preferred, part.rejected))
            return
        del self.partial[key]
        await self._commit(part)

    async def _commit(self, part: _Partial) -> None:
        req = part.request
        plan = self.plans[req.tree_id]
        preferred, rejected, judge = part.preferred, part.rejected, part.judge
        if judge is not None:
            self.progress.judge_total += 1
            self.progress.judge_agree += int(judge.get("agrees", False))
            self.progress.judge_disagree += int(judge.get("disagrees", False))
            if self.settings.swap_on_disagree and judge.get("disagrees"):
                preferred, rejected = rejected, preferred
                judge = {**judge, "swapped": True}
        node = Node(tree_id=req.tree_id, turn=req.turn, branch=req.branch, user_message=part.message,
                    inferred=part.inferred or InferredPersona(), preferred=preferred or "", rejected=rejected or "",
                    continued=plan.continued_of(req.branch), judge=judge)  # type: ignore[arg-type]
        node_id = await self.store.write(lambda c: insert_node(c, node))
        if req.tree_id in self.failed or req.tree_id not in self.plans:
            return
        plan.add(replace(node, id=node_id))
        self.progress.nodes += 1
        await self._advance(req.tree_id)

    async def _fail(self, msg: TreeFailed) -> None:
        if msg.tree_id in self.failed or msg.tree_id not in self.plans:
            return
        self.failed.add(msg.tree_id)
        reason = f"{msg.role} at branch {msg.branch!r}: {msg.reason}"
        for key in [k for k in self.partial if k[0] == msg.tree_id]:
            del self.partial[key]
        await self.store.write(lambda c: c.execute(
            "UPDATE trees SET status = 'failed', error = ?, finished_at = ? WHERE id = ?",
            (reason, time.time(), msg.tree_id)))
        log.warning("tree.failed", tree_id=msg.tree_id, reason=reason)
        self.progress.trees_failed += 1
        self.progress.failures.append({"tree_id": msg.tree_id, "reason": reason})
        self._release(msg.tree_id)


def _concurrency(cfg: Any, role: str) -> int:
    v = ((cfg.get("agents") or {}).get(role) or {}).get("concurrency", 16)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"agents.{role}.concurrency", v, "an integer >= 1")
    return v


async def grow_trees(store: Store, run_id: int | None, jobs: list[TreeJob], roles: dict[str, Any],
                     settings: GenerationSettings, cfg: Any, progress: Progress | None = None,
                     *, on_started: Any = None) -> Progress:
    """Grow every tree in ``jobs`` to completion (or failure) through the actors."""
    progress = progress or Progress(trees_total=len(jobs))
    bus = Bus(store, run_id)
    env = TreeEnvironment(bus, store, settings, progress)
    per_node = 1 if settings.mode == "path" else settings.node_budget
    env_buffer = settings.max_trees_in_flight * per_node * 5 + 16  # see the module docstring
    conc = {r: _concurrency(cfg, r) for r in (*ROLES, "preference_judge")}

    def ctx(req: TurnRequested) -> CallContext:
        return CallContext(run_id=run_id, tree_id=req.tree_id, turn=req.turn, branch=req.branch)

    def convo(req: TurnRequested) -> list[dict[str, str]]:
        return list(req.history)

    async def on_user(req: TurnRequested) -> None:
        text = await roles["user"](req.persona, convo(req), seed=call_seed(req.seed, req.branch, "user"), context=ctx(req))
        await bus.publish(UserSpoke(req, text))

    async def on_inducer(s: UserSpoke) -> None:
        req = s.request
        seen = convo(req) + [{"role": "user", "content": s.message}]
        inferred = await roles["inducer"](req.persona, seen, seed=call_seed(req.seed, req.branch, "inducer"),
                                          context=ctx(req))
        await bus.publish(PersonaInferred(s, inferred))

    async def on_preferred(p: PersonaInferred) -> None:
        req = p.spoke.request
        text = await roles["preferred"](convo(req), p.spoke.message, p.inferred,
                                        seed=call_seed(req.seed, req.branch, "preferred"), context=ctx(req))
        await bus.publish(ReplyReady(p.spoke, "preferred", text))

    async def on_rejected(s: UserSpoke) -> None:
        req = s.request
        text = await roles["rejected"](convo(req), s.message, seed=call_seed(req.seed, req.branch, "rejected"),
                                       context=ctx(req))
        await bus.publish(ReplyReady(s, "rejected", text))

    async def on_judge(p: PreferenceRequested) -> None:
        req = p.spoke.request
        verdict = await roles["preference_judge"](req.persona, convo(req), p.spoke.message, p.preferred, p.rejected,
                                                  seed=call_seed(req.seed, req.branch, "preference_judge"),
                                                  context=ctx(req))
        await bus.publish(PreferenceChecked(p.spoke, verdict))

    def failer(role: str):
        async def on_error(msg: Any, exc: Exception) -> None:
            req = msg if isinstance(msg, TurnRequested) else getattr(msg, "spoke", None) or msg.request
            if isinstance(req, UserSpoke):
                req = req.request
            reason = exc.reason if isinstance(exc, LLMError) else f"internal error: {type(exc).__name__}: {exc}"
            await bus.publish(TreeFailed(req.tree_id, req.branch, role, reason))
        return on_error

    actors = [
        Actor("environment", bus.subscribe_many((PersonaInferred, ReplyReady, PreferenceChecked, TreeFailed), env_buffer),
              env.handle, concurrency=max(8, min(256, settings.max_trees_in_flight))),
        Actor("user", bus.subscribe(TurnRequested, conc["user"]), on_user, conc["user"], failer("user")),
        Actor("inducer", bus.subscribe(UserSpoke, conc["inducer"]), on_inducer, conc["inducer"], failer("inducer")),
        Actor("rejected", bus.subscribe(UserSpoke, conc["rejected"]), on_rejected, conc["rejected"], failer("rejected")),
        Actor("preferred", bus.subscribe(PersonaInferred, conc["preferred"]), on_preferred, conc["preferred"],
              failer("preferred")),
    ]
    if settings.preference_check:
        actors.append(Actor("preference_judge", bus.subscribe(PreferenceRequested, conc["preference_judge"]), on_judge,
                            conc["preference_judge"], failer("preference_judge")))

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
    return progress
