"""aloe generate: grow preference trees (four role actors on the event bus)."""

from __future__ import annotations

import json
import sys

from omegaconf import DictConfig

from ...agents import check_budget_priced, pricer_of, role_backend_settings, role_settings, spend_limit_of
from ...core import ConfigError, run_interruptible
from ...inspection import end_of_command, generate_lines
from .._dry_run import plan_generation
from .._generate import ROLES, GenerationSettings
from .._generate_run import generate_trees

HELP = "grow preference trees: user, inducer, preferred and rejected actors on the event bus"


def validate(cfg: DictConfig) -> tuple[GenerationSettings, list[str]]:
    """Check every value before anything is opened or started (also run by ``-m``
    for every job of a sweep before the first one runs). A dry run needs no API key."""
    settings = GenerationSettings.from_config(cfg.generation)
    roles_needed = list(ROLES) + (["preference_judge"] if settings.preference_check else [])
    pricer_of(cfg)
    backends = {}
    for role in roles_needed:
        role_settings(cfg, role)
        backends[f"agents.{role}"] = role_backend_settings(cfg, role, check_key=not cfg.get("dry_run", False))
    if not cfg.get("dry_run", False):
        check_budget_priced(cfg, backends)  # budget.usd needs every price known
    if (limit := spend_limit_of(cfg)) is not None and (settings.engine == "ray" or (settings.workers or 1) > 1):
        # one spend counter: N processes would each spend up to the limit
        raise ConfigError("budget.usd", limit.usd, "unset with generation.workers > 1 or generation.engine=ray "
                          "(a budget is kept by one process: leave generation.workers unset or 1)")
    role_settings(cfg, "preference_judge")  # grow_trees reads it even when the check is off
    return settings, roles_needed


async def generate(cfg: DictConfig) -> dict:
    """Check ``cfg``, then grow its run's trees; returns the run's stats."""
    settings, roles_needed = validate(cfg)  # every bad value fails before the database is touched
    return await generate_trees(cfg, settings, roles_needed)


def run(cfg: DictConfig) -> int:
    settings, roles_needed = validate(cfg)
    if cfg.get("dry_run", False):  # the plan and its price: no model called, nothing written
        plan = plan_generation(cfg, settings, roles_needed)
        for line in plan.lines():
            print(f"aloe generate: {line}", file=sys.stderr)
        print(json.dumps(plan.as_dict()))
        return 0
    stats = run_interruptible(generate_trees, cfg, settings, roles_needed)
    end_of_command(json.dumps({k: v for k, v in stats.items() if k != "this_invocation"}),
                   lambda: generate_lines(str(cfg.db), stats))
    return 0 if stats["trees_complete"] == stats["trees"] else 3
