"""From config to models: the backend each role talks to, with managed
servers started on demand and shared.

``open_models(cfg, store, roles)`` yields ``{role: ChatModel}``. Roles whose
resolved backend settings are equal share one ``Backend`` (so one
connection pool, one set of limits, one server). Embedded (llama.cpp) and
managed vLLM servers are started before the first role that needs them and
stopped, shielded, when the block exits, whatever happened inside.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup
from omegaconf import DictConfig, OmegaConf

from ..core import compose_option, lone_error, to_settings
from ..core.errors import ConfigError, MissingKeyError, ServerError
from ..environment.store import Store
from ._roles import (
    AlignmentJudge,
    Inducer,
    PreferenceJudge,
    PreferredResponder,
    RejectedResponder,
    UserSimulator,
)
from ._settings import PromptsSettings, RoleSettings
from .gateway import (
    BACKEND_SCHEMAS,
    Backend,
    BackendSettings,
    BudgetSettings,
    ChatModel,
    Pricer,
    PricingSettings,
    RetryBudget,
    Sampling,
    SpendLimit,
    StoreRecorder,
)

ROLE_CLASSES = {
    "user": (UserSimulator, "user"),
    "inducer": (Inducer, "inducer"),
    "preferred": (PreferredResponder, "preferred"),
    "rejected": (RejectedResponder, "rejected"),
    "preference_judge": (PreferenceJudge, "preference"),
    "judge": (AlignmentJudge, "judge"),
}


def _plain(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def backend_preset(name: str) -> dict[str, Any]:
    """The backend preset ``conf/backend/<name>.yaml`` shipped with aloesim, composed
    with its schema (every key, with that kind's defaults)."""
    return _plain(compose_option("backend", name, BACKEND_SCHEMAS))


def role_backend_settings(cfg: DictConfig, role: str, *, check_key: bool = True) -> BackendSettings:
    """Resolve the backend of ``role``: the top-level ``backend`` unless
    ``agents.<role>.backend`` names a preset; ``agents.<role>.model`` overrides the model."""
    role_cfg = (cfg.get("agents") or {}).get(role) or {}
    choice = role_cfg.get("backend", "default") or "default"
    if choice == "default":
        base, prefix = _plain(cfg.backend), "backend"
    else:
        base, prefix = backend_preset(str(choice)), f"agents.{role}.backend"
    if role_cfg.get("model"):
        base["model"] = role_cfg.get("model")
    settings = _backend_settings(base, prefix)
    # a missing key is a config mistake: found here, before any command opens its database
    if check_key and settings.api_key_env and not os.environ.get(settings.api_key_env):
        raise MissingKeyError(f"{prefix}.api_key_env", settings.api_key_env)
    return settings


def _backend_settings(base: dict[str, Any], prefix: str) -> BackendSettings:
    """``BackendSettings.from_config`` of a plain backend mapping, built once per distinct mapping:
    every command asks for each role's backend several times (checks, plan, pool), and typed settings
    cost milliseconds each (the settings are frozen, so sharing them is safe)."""
    try:
        key = json.dumps(base, sort_keys=True)
    except (TypeError, ValueError):  # not plain data: built each time
        return BackendSettings.from_config(base, prefix=prefix)
    return _backend_settings_of(key, prefix)


@functools.lru_cache(maxsize=64)
def _backend_settings_of(key: str, prefix: str) -> BackendSettings:
    return BackendSettings.from_config(json.loads(key), prefix=prefix)


def pricer_of(cfg: Any) -> Pricer:
    """The ``Pricer`` of a command's ``pricing`` config (the defaults when it has none)."""
    return Pricer(to_settings(cfg.get("pricing") if hasattr(cfg, "get") else None, PricingSettings, "pricing"))


def spend_limit_of(cfg: Any) -> SpendLimit | None:
    """The ``SpendLimit`` of a command's ``budget.usd`` (None: no limit). Its spend starts at 0: the
    command sets what the run spent before (``SpendLimit.spent``) once it knows the run."""
    usd = to_settings(cfg.get("budget") if hasattr(cfg, "get") else None, BudgetSettings, "budget").usd
    return None if usd is None else SpendLimit(usd)


def check_budget_priced(cfg: Any, backends: Mapping[str, BackendSettings]) -> None:
    """With ``budget.usd`` set, every model the command calls (``{who: settings}``) must have a known price
    (an override, a free kind, or genai-prices): a spend that counts unknown calls as $0 would not stop."""
    limit = spend_limit_of(cfg)
    if limit is None:
        return
    pricer = pricer_of(cfg)
    for who, s in backends.items():
        if pricer.source(s.model, kind=s.kind) == "unknown":
            raise ConfigError("budget.usd", limit.usd, f"no limit while {who} calls {s.model!r}, whose price is "
                              f"unknown: price it with pricing.models=[{{model: {s.model}, input: USD_PER_MTOK, "
                              "output: USD_PER_MTOK}], or leave budget.usd unset")


def role_settings(cfg: Any, role: str) -> RoleSettings:
    """The checked ``agents.<role>`` entry (the schema's defaults when the config has none)."""
    return to_settings((cfg.get("agents") or {}).get(role), RoleSettings, f"agents.{role}")


def role_sampling(cfg: DictConfig, role: str) -> Sampling:
    return role_settings(cfg, role).sampling


def check_reachable(settings: Iterable[BackendSettings], *, timeout: float = 5.0) -> None:
    """Open a TCP connection to every endpoint aloesim does not start itself, so
    a server that is down at the start is one line before anything is written.
    (A server that goes away mid-run is a fault like any other: retried, then
    recorded against its tree or case.)"""
    seen: set[tuple[str, int]] = set()
    for s in settings:
        if s.managed:
            continue
        for url in s.urls:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if (host, port) in seen:
                continue
            seen.add((host, port))
            try:
                socket.create_connection((host, port), timeout=timeout).close()
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise ServerError(url, f"cannot connect ({reason}); is the server running?") from None


class ModelPool:
    """Backends and the managed servers behind them, for one command."""

    def __init__(self, stack: AsyncExitStack, task_group: TaskGroup, store: Store | None, *, cache: bool,
                 run_id: int | None, seed: int, pricer: Pricer | None = None, spend: SpendLimit | None = None,
                 servers: Mapping[str, list[str]] | None = None) -> None:
        self._stack = stack
        self._task_group = task_group  # background work of the pool (loading the price table)
        self._store = store
        self._cache = cache
        self._run_id = run_id
        self._seed = seed
        self._backends: dict[str, Backend] = {}
        self._batches: dict[str, Any] = {}  # settings -> BatchModel (backend.mode=batch)
        self._servers: dict[str, list[str]] = {k: list(v) for k, v in (servers or {}).items()}
        self._guards: dict[str, Any] = {}  # URL -> the watch of the managed server behind it
        self.budget: RetryBudget | None = None
        self.pricer = pricer or Pricer()
        self.spend = spend  # budget.usd, shared by every backend of the pool

    async def urls(self, s: BackendSettings) -> list[str]:
        if not s.managed:
            return list(s.urls)
        spec = asdict(s)
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in self._servers:
            from .servers import managed_servers

            servers = await self._stack.enter_async_context(managed_servers(spec))
            self._servers[key] = [server.url for server in servers]
            self._guards.update({server.url: server.watch for server in servers})
        return self._servers[key]

    async def backend(self, s: BackendSettings, *, name: str | None = None) -> Any:
        """The ``ChatModel`` of ``s``: its ``Backend``, or a ``BatchModel`` over it in batch mode."""
        key = repr(s)
        if key not in self._backends:
            urls = await self.urls(s)
            if self.budget is None:
                self.budget = RetryBudget(s.retry_budget)
            recorder = StoreRecorder(self._store, self._run_id) if self._store is not None else None
            backend = Backend(s, urls, name=name, recorder=recorder, cache=self._cache, budget=self.budget,
                              seed=self._seed, guards=self._guards, pricer=self.pricer, spend=self.spend)
            self._stack.push_async_callback(backend.aclose)
            self._backends[key] = backend
            if self.pricer.uses_table(s.model, kind=s.kind):  # loaded in a worker thread while the first calls
                warm = functools.partial(self.pricer.warm, s.model, kind=s.kind)  # are out, not on the loop
                self._task_group.start_soon(anyio.to_thread.run_sync, warm)
            if s.mode == "batch":  # the same backend, its calls through the provider's batch API
                from .gateway.batch import BatchModel, OpenAIBatches

                key_value = os.environ.get(s.api_key_env, "") if s.api_key_env else ""
                provider = OpenAIBatches(urls[0], key_value or "sk-no-key-required", timeout=s.timeout)
                del key_value
                self._batches[key] = BatchModel(backend, provider, s.batch, self._store)
                self._stack.push_async_callback(self._batches[key].aclose)
        return self._batches.get(key) or self._backends[key]

    async def for_role(self, cfg: DictConfig, role: str) -> Any:
        return await self.backend(role_backend_settings(cfg, role))

    @property
    def batch_models(self) -> list[Any]:
        """The ``BatchModel`` of each batch-mode backend."""
        return list(self._batches.values())

    @property
    def backends(self) -> list[Backend]:
        return list(self._backends.values())

    @property
    def servers(self) -> dict[str, list[str]]:
        """The managed servers this pool started or was given (``{settings key: URLs}``):
        handed to worker processes (``model_pool(servers=...)``) so they share them."""
        return {k: list(v) for k, v in self._servers.items()}


@asynccontextmanager
async def model_pool(cfg: DictConfig, store: Store | None, *, run_id: int | None = None,
                     servers: Mapping[str, list[str]] | None = None) -> AsyncIterator[ModelPool]:
    """The pool of one command; ``servers`` (another pool's ``servers``) are managed
    servers already running: used as they are, never started again nor stopped here."""
    # the task group outside the stack: what the stack enters later (managed servers, with cancel
    # scopes of their own) nests inside it, and leaves before it
    with lone_error():  # the body's own error, not a group of one
        async with anyio.create_task_group() as task_group, AsyncExitStack() as stack:
            yield ModelPool(stack, task_group, store, cache=bool(cfg.get("cache", True)), run_id=run_id,
                            seed=int(cfg.get("seed", 0)), pricer=pricer_of(cfg), spend=spend_limit_of(cfg),
                            servers=servers)


@asynccontextmanager
async def open_models(cfg: DictConfig, store: Store | None, roles: Iterable[str], *,
                      run_id: int | None = None) -> AsyncIterator[dict[str, ChatModel]]:
    """``{role: ChatModel}`` for the given roles, servers started as needed."""
    roles = list(roles)
    # resolve every role's settings first: a bad value fails before any server starts
    settings = {role: role_backend_settings(cfg, role) for role in roles}
    async with model_pool(cfg, store, run_id=run_id) as pool:
        yield {role: await pool.backend(settings[role]) for role in roles}


def prompt_format(cfg: Any) -> str:
    """``prompts.format`` (json | text; the schema's default when the config has none)."""
    node = cfg.get("prompts") or {}
    value = node.get("format") if hasattr(node, "get") else None
    default = PromptsSettings.__dataclass_fields__["format"].default
    value = default if value is None else value
    if value not in ("json", "text"):
        raise ConfigError("prompts.format", value, "json | text")
    return str(value)


def make_roles(cfg: DictConfig, models: Mapping[str, ChatModel]) -> dict[str, Any]:
    """The role objects (UserSimulator, Inducer, ...) for the given models,
    with prompts from ``cfg.prompts`` (read as ``prompts.format`` says) and
    sampling from ``cfg.agents``."""
    output = prompt_format(cfg)
    out = {}
    for role, model in models.items():
        if role not in ROLE_CLASSES:
            continue
        cls, prompt_key = ROLE_CLASSES[role]
        prompt = (cfg.get("prompts") or {}).get(prompt_key)
        if not prompt:
            raise ConfigError(f"prompts.{prompt_key}", prompt, "a prompt template")
        out[role] = cls(model, str(prompt), role_sampling(cfg, role), output)
    return out
