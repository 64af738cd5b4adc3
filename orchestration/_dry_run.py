"""``aloe generate dry_run=true``: what a run would ask of its models and what it
would cost, without calling a model or writing the database.

The calls and tokens are the paper's ``generation.estimate``
(``estimate_generation``: the real prompt templates and the personas' lengths,
the history growing turn by turn) with every role's ``max_tokens`` scaled by
``pricing.completion_fraction`` (1 = every reply at its limit: an upper bound;
the history grows by the scaled replies too). The personas are the ones the run
would take from the database (read only); with none there, the shipped seed
pools paired as the run would pair them. Dollars per role are the role's
model priced by ``Pricer`` at the role's mean prompt and completion per call
(tiered prices stay per call); ``None`` when a model's price is unknown.

    plan = plan_generation(cfg, settings, roles)   # GenerationPlan
    plan.as_dict(); plan.lines()

``aloe evaluate dry_run=true`` is ``plan_evaluation``: the calls of the cases
x turns (role-play user, evaluated model, judge, a second judge) and of the
judge check's probes, from ``estimate_evaluation``, priced the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..agents import pricer_of, role_backend_settings, role_settings
from ..agents.gateway import library_version
from ..core import terminal_safe
from ..environment import Persona, stable_int
from ..environment.personas import seed_items
from ..environment.store import Personas, connect, dollars_text
from ._estimate import CHARS_PER_TOKEN, GenerationEstimate, RoleLoad, estimate_evaluation, estimate_generation
from ._generate import GenerationSettings

__all__ = ["EvaluationDryRun", "GenerationPlan", "RolePlan", "plan_evaluation", "plan_generation"]


@dataclass(frozen=True)
class RolePlan:
    role: str
    model: str
    kind: str
    price_source: str  # override | free | genai-prices | unknown
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


class _Priced:
    """The dollars of a plan's roles: the known ones summed, the unknown counted."""

    roles: tuple[RolePlan, ...]

    @property
    def cost_usd(self) -> float | None:
        known = [r.cost_usd for r in self.roles if r.cost_usd is not None]
        return sum(known) if known or not self.roles else None

    @property
    def unpriced_calls(self) -> int:
        return sum(r.calls for r in self.roles if r.cost_usd is None)

    def role_dicts(self) -> dict[str, Any]:
        return {r.role: {"model": r.model, "kind": r.kind, "price": r.price_source, "calls": r.calls,
                         "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                         "cost_usd": None if r.cost_usd is None else round(r.cost_usd, 6)} for r in self.roles}

    def role_lines(self) -> list[str]:
        out = []
        for r in self.roles:
            cost = dollars_text(r.cost_usd, r.calls if r.cost_usd is None else 0)
            out.append(f"  {r.role:<22} {r.calls:>8,} calls  ~{r.prompt_tokens:>12,} prompt  "
                       f"~{r.completion_tokens:>11,} completion  {cost:>10}  {terminal_safe(r.model)} ({r.kind}, "
                       f"price: {r.price_source})")
        return out


def _role_plan(pricer: Any, role: str, model: str, kind: str, load: RoleLoad, *, batch: bool = False) -> RolePlan:
    """One role's share priced at its mean call (tiered prices stay per call; ``batch``: batch rates)."""
    cost = 0.0
    if load.calls:
        one = pricer.price(model, load.prompt_tokens / load.calls, load.completion_tokens / load.calls, kind=kind,
                           batch=batch)
        cost = None if one is None else one * load.calls
    return RolePlan(role, model, kind, pricer.source(model, kind=kind), load.calls, load.prompt_tokens,
                    load.completion_tokens, cost)


@dataclass(frozen=True)
class GenerationPlan(_Priced):
    estimate: GenerationEstimate
    roles: tuple[RolePlan, ...]
    personas_from: str  # "database" | "seeds"
    completion_fraction: float

    def as_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {"dry_run": True, "trees": e.trees, "turns": e.turns, "mode": e.mode, "nodes": e.nodes,
                "calls": e.calls, "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
                "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
                "unpriced_calls": self.unpriced_calls, "personas_from": self.personas_from,
                "completion_fraction": self.completion_fraction, "genai_prices": library_version(),
                "roles": self.role_dicts(),
                "basis": f"replies at {self.completion_fraction:g} x max_tokens (pricing.completion_fraction), "
                         f"about {CHARS_PER_TOKEN:g} characters per token, retries not counted; the whole run "
                         "(a resumed run makes fewer calls)"}

    def lines(self) -> list[str]:
        e = self.estimate
        total = dollars_text(self.cost_usd, self.unpriced_calls)
        out = [(f"dry run: {e.trees:,} trees x {e.turns} turns ({e.mode}) = {e.nodes:,} nodes, {e.calls:,} LLM calls, "
                f"~{e.prompt_tokens:,} prompt + ~{e.completion_tokens:,} completion tokens, {total} "
                f"(personas from the {self.personas_from})")]
        out += self.role_lines()
        out.append(f"  tokens: about {CHARS_PER_TOKEN:g} characters per token, replies at {self.completion_fraction:g} x max_tokens "
                   "(pricing.completion_fraction), retries not counted; nothing was called or written")
        return out


def _personas(cfg: DictConfig, settings: GenerationSettings) -> tuple[list[Persona], str]:
    """The personas the run would take (read only), else the seed pools paired."""
    db = Path(str(cfg.db))
    found: list[Persona] = []
    if db.exists():
        conn = connect(db, readonly=True)
        try:
            found = Personas(conn).personas(settings.split)
        finally:
            conn.close()
    if found:
        if settings.shard_index is not None:
            i, n = settings.shard_index
            found = [p for p in found if stable_int(p.profile, p.personality) % n == i]
        found.sort(key=lambda p: stable_int(int(cfg.seed), p.profile, p.personality))
        return found[: settings.trees], "database"
    profiles, traits = seed_items("profile", settings.split), seed_items("personality", settings.split)
    pairs = min(settings.trees, len(profiles) * len(traits))
    return [Persona(i, profiles[i % len(profiles)], traits[(i // len(profiles)) % len(traits)])
            for i in range(pairs)], "seeds"


def plan_generation(cfg: DictConfig, settings: GenerationSettings, roles_needed: list[str]) -> GenerationPlan:
    """The calls, tokens and dollars of the run ``cfg`` describes (nothing called, nothing written)."""
    pricer = pricer_of(cfg)
    fraction = pricer.settings.completion_fraction
    personas, source = _personas(cfg, settings)
    limits = {role: max(1, math.ceil(role_settings(cfg, role).max_tokens * fraction)) for role in roles_needed}
    estimate = estimate_generation(settings, cfg.prompts, limits, personas)
    roles = []
    for role, load in estimate.roles.items():
        backend = role_backend_settings(cfg, role, check_key=False)  # a dry run needs no key
        roles.append(_role_plan(pricer, role, backend.model, backend.kind, load, batch=backend.mode == "batch"))
    return GenerationPlan(estimate, tuple(roles), source, fraction)


@dataclass(frozen=True)
class EvaluationDryRun(_Priced):
    cases: int
    turns: int
    roles: tuple[RolePlan, ...]
    completion_fraction: float

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.roles)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "cases": self.cases, "turns": self.turns, "calls": self.calls,
                "prompt_tokens": sum(r.prompt_tokens for r in self.roles),
                "completion_tokens": sum(r.completion_tokens for r in self.roles),
                "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
                "unpriced_calls": self.unpriced_calls, "completion_fraction": self.completion_fraction,
                "genai_prices": library_version(), "roles": self.role_dicts(),
                "basis": f"replies at {self.completion_fraction:g} x max_tokens (pricing.completion_fraction), "
                         f"about {CHARS_PER_TOKEN:g} characters per token, retries not counted; the whole "
                         "evaluation (a resumed one makes fewer calls)"}

    def lines(self) -> list[str]:
        d = self.as_dict()
        out = [(f"dry run: {self.cases:,} cases x {self.turns} turns, {self.calls:,} LLM calls, "
               f"~{d['prompt_tokens']:,} prompt + ~{d['completion_tokens']:,} completion tokens, "
               f"{dollars_text(self.cost_usd, self.unpriced_calls)}")]
        out += self.role_lines()
        out.append(f"  tokens: about {CHARS_PER_TOKEN:g} characters per token, replies at {self.completion_fraction:g}"
                   " x max_tokens (pricing.completion_fraction), retries not counted; nothing was called, loaded or "
                   "written")
        return out


def plan_evaluation(cfg: DictConfig, cases: list[Persona], turns: int, models: dict[str, tuple[str, str]],
                    limits: dict[str, int], *, probes: int, preference_probes: int) -> EvaluationDryRun:
    """The calls, tokens and dollars of an evaluation (nothing called, loaded or written). ``models``:
    per role of ``EVALUATION_ROLES`` that the evaluation has, its (model, backend kind); ``limits``: the
    max_tokens of user, evaluated, judge and preference_judge."""
    pricer = pricer_of(cfg)
    fraction = pricer.settings.completion_fraction
    scaled = {k: max(1, math.ceil(v * fraction)) for k, v in limits.items()}
    loads = estimate_evaluation(cases, turns, cfg.prompts, scaled, probes=probes, preference_probes=preference_probes,
                                second_judge="second_judge" in models)
    roles = tuple(_role_plan(pricer, role, *models[role], load) for role, load in loads.items())
    return EvaluationDryRun(len(cases), turns, roles, fraction)
