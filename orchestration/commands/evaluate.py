"""``aloe evaluate``: run the ALOE benchmark and write its report.

    aloe evaluate db=run.db benchmark.profiles=eval_profiles.jsonl \\
        benchmark.personalities=eval_personalities.jsonl benchmark.cases=10 benchmark.turns=5 \\
        model=hf model.path=runs/dpo/final evaluation.label=DPO evaluation.out_dir=reports/dpo

Everything the user gives is checked first (numbers, files, the model
choice, the labels CSV); a mistake is one line and nothing is written.
Re-running the same command continues the stored evaluation. Prints one
JSON line: evaluation id, status, summary metrics, the judge check's verdict
(``judge_reliable``) and the report files; a judge that failed its check is
also one warning line on stderr.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from omegaconf import DictConfig, OmegaConf

from ...agents import (
    ModelPool,
    backend_preset,
    check_budget_priced,
    check_reachable,
    make_roles,
    model_pool,
    prompt_format,
    role_backend_settings,
    role_sampling,
    role_settings,
    spend_limit_of,
)
from ...agents.gateway import BackendSettings, ChatModel, Sampling, SpendLimit
from ...core import json_safe, run_interruptible, to_settings
from ...core.errors import ConfigError
from ...environment.store import Store, connect
from ...evaluation import (
    MODEL_SCHEMAS,
    BenchmarkSettings,
    BenchmarkSpec,
    CaseSet,
    CasesRunner,
    EvaluatedModel,
    EvaluationPlan,
    EvaluationSettings,
    HFModel,
    ModelSettings,
    SecondJudge,
    case_set_from_db,
    case_set_from_files,
    evaluate,
    first_cases,
    metrics,
)
from ...inspection import end_of_command, evaluate_lines
from .._dry_run import plan_evaluation
from .._judging import judge_backend, make_judges, warn_if_unreliable
from .._runs import lease_settings

HELP = "run the ALOE benchmark (role-play user x evaluated model, LLM judge) and write its report"

log = structlog.get_logger(__name__)

_SAMPLING_KEYS = ("temperature", "max_tokens", "top_p")
_NOT_BACKEND = {"kind", "name", "path", "gguf_file", "device", "dtype", *_SAMPLING_KEYS}


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def model_settings(cfg: DictConfig) -> ModelSettings:
    """The checked ``model`` node (its schema chosen by ``model.kind``)."""
    node = cfg.get("model")
    kind = node.get("kind") if isinstance(node, (Mapping, DictConfig)) else None
    schema = MODEL_SCHEMAS.get(kind, ModelSettings) if isinstance(kind, str) else ModelSettings
    return to_settings(node, schema, "model")


def evaluated_model(cfg: DictConfig) -> EvaluatedModel:
    """Check ``cfg.model`` and resolve it to settings (no server started)."""
    model = model_settings(cfg)
    m: dict[str, Any] = asdict(model)
    kind, sampling = model.kind, model.sampling
    if isinstance(model, HFModel):
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            raise ConfigError("model", "hf", "a backend whose packages are installed (model=hf needs "
                                             "pip install 'aloesim[train]': torch, transformers)")
        if not model.path:
            raise ConfigError("model.path", model.path, "the directory of a Hugging Face checkpoint (model=hf model.path=DIR)")
        p = Path(model.path).expanduser()
        if not p.is_dir():
            raise ConfigError("model.path", model.path, "an existing checkpoint directory")
        gguf = model.gguf_file
        if gguf is not None and not (p / gguf).is_file():
            raise ConfigError("model.gguf_file", gguf, f"a GGUF file inside {p}")
        if gguf is None and not (p / "config.json").is_file():
            raise ConfigError("model.path", model.path, "a checkpoint directory with config.json (or set model.gguf_file)")
        hf = {"path": str(p.resolve()), "gguf_file": gguf, "name": model.name or p.name, "device": model.device,
              "dtype": model.dtype, "max_retries": model.max_retries}
        identity = {"kind": "hf", "name": hf["name"], "path": hf["path"], "gguf_file": gguf,
                    "sampling": sampling.as_params()}
        return EvaluatedModel("hf", sampling, identity, hf=hf)
    # an OpenAI-compatible endpoint: the backend preset of that kind (or the
    # running `backend`, so an embedded model shares its server), then model.*
    backend_cfg = _plain(cfg.get("backend")) or {}
    base = dict(backend_cfg) if backend_cfg.get("kind") == kind else backend_preset(kind)
    for key, value in m.items():
        if key not in _NOT_BACKEND and (value is not None or key not in base):
            base[key] = value
    if m.get("name"):
        base["model"] = m["name"]
    elif kind == "embedded" and m.get("gguf"):
        base["model"] = Path(str(m["gguf"])).stem     # a fine-tuned GGUF is named after its file
    if kind == "openai":
        if not m.get("name"):
            raise ConfigError("model.name", m.get("name"), "the model name the endpoint serves (model.name=NAME)")
        env = base.get("api_key_env")
        if env and env not in os.environ:
            base["api_key_env"] = None    # no key set: talk to the endpoint without one (local servers)
    settings = BackendSettings.from_config(base, prefix="model")
    identity = {"kind": kind, "name": settings.model, "sampling": sampling.as_params()}
    if settings.urls:
        identity["base_url"] = ",".join(settings.urls)
    if getattr(settings, "gguf", None):
        identity["gguf"] = settings.gguf  # type: ignore[attr-defined]
    return EvaluatedModel(kind, sampling, identity, backend=settings)


def _role_identity(cfg: DictConfig, role: str, prompt_key: str, *, check_key: bool = True) -> dict[str, Any]:
    s = role_backend_settings(cfg, role, check_key=check_key)
    prompt = str((cfg.get("prompts") or {}).get(prompt_key) or "")
    ident = {"kind": s.kind, "name": s.model, "sampling": role_sampling(cfg, role).as_params(),
             "prompt_sha": hashlib.sha256(prompt.encode()).hexdigest()[:12]}
    if s.urls:
        ident["base_url"] = ",".join(s.urls)
    if getattr(s, "gguf", None):
        ident["gguf"] = s.gguf  # type: ignore[attr-defined]
    return ident


def select_cases(cfg: DictConfig, *, readonly: bool = False) -> CaseSet:
    """The benchmark cases: from the two files (each profile with the first
    ``benchmark.personalities_per_profile`` personalities), or the database's
    eval split; the first ``benchmark.cases``. The set's description (name,
    count, files with their SHA-256) goes into the report."""
    b: BenchmarkSettings = to_settings(cfg.get("benchmark"), BenchmarkSettings, "benchmark")
    profiles, personalities, n = b.profiles, b.personalities, b.cases
    if profiles is not None:
        chosen = case_set_from_files(str(profiles), str(personalities), name=b.name,
                                     personalities_per_profile=b.personalities_per_profile)
        source = "files"
        if b.expected_cases is not None and len(chosen.cases) != b.expected_cases:
            per, info = b.personalities_per_profile, chosen.info
            got = (f"{info['profiles']['items']} profiles x {info['personalities']['used']}"
                   f"{'' if per is None else f' (the first {per})'} personalities = {len(chosen.cases)} cases")
            raise ConfigError("benchmark.profiles", str(profiles),
                              f"files giving the {b.expected_cases} cases of the {b.name or 'chosen'} case set "
                              f"(these give {got}; the published profile_eval.jsonl and personality_eval.jsonl "
                              "give 20 x 5 = 100)")
    else:
        conn = connect(cfg.db, create=False, readonly=readonly)
        try:
            chosen = case_set_from_db(conn, cfg.db, name=b.name)
        finally:
            conn.close()
        source = f"the eval split of {cfg.db}"
        if not chosen.cases:
            raise ConfigError("benchmark.profiles", None,
                              f"files of evaluation profiles and personalities (no eval personas in {cfg.db})")
    if n is not None:
        if n > len(chosen.cases):
            raise ConfigError("benchmark.cases", n, f"at most {len(chosen.cases)} (the cases in {source})")
        chosen = first_cases(chosen, n)
    return chosen


def second_judge_settings(cfg: DictConfig) -> BackendSettings | None:
    """The backend of ``evaluation.second_judge`` (None when not set)."""
    e: EvaluationSettings = to_settings(cfg.get("evaluation"), EvaluationSettings, "evaluation")
    choice = e.second_judge
    if choice is None:
        return None
    base = (_plain(cfg.get("backend")) or {}) if choice == "default" else backend_preset(choice)
    if e.second_judge_model:
        base["model"] = e.second_judge_model
    return BackendSettings.from_config(base, prefix="evaluation.second_judge")


def plan(cfg: DictConfig, *, dry_run: bool = False) -> EvaluationPlan:
    """Check everything the user gave; no file or database is written (``dry_run``:
    no API key needed, the database only read)."""
    turns = to_settings(cfg.get("benchmark"), BenchmarkSettings, "benchmark").turns
    e: EvaluationSettings = to_settings(cfg.get("evaluation"), EvaluationSettings, "evaluation")
    concurrency, n_boot, level = e.concurrency, e.bootstrap, e.ci_level
    out = Path(e.out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError("evaluation.out_dir", e.out_dir, "a folder (this path is a file)")
    model = evaluated_model(cfg)
    user_ident = _role_identity(cfg, "user", "user", check_key=not dry_run)
    judge_ident = _role_identity(cfg, "judge", "judge", check_key=not dry_run)
    second = second_judge_settings(cfg)
    labels = metrics.read_labels(e.labels) if e.labels else None
    case_set = select_cases(cfg, readonly=dry_run)
    cases = case_set.cases
    label = e.label or model.identity["name"]
    config = {k: v for k, v in _plain(cfg).items() if k not in ("log",)}
    config["case_set"] = case_set.info  # stored with the run: the report names the cases it scored
    spec = BenchmarkSpec(label=str(label), turns=turns, concurrency=concurrency, seed=int(cfg.get("seed", 0)),
                         sampling=model.sampling, model=model.identity, user_model=user_ident,
                         judge_model=judge_ident, config=config)
    spec.validate()
    source = f"labels {e.labels}" if labels is not None else "labels"
    return EvaluationPlan(cases, spec, model, out, n_boot, level, labels, second, labels_source=source,
                          scoring=e.judge_scoring, judge_check=e.judge_check)


@dataclass
class _Models:
    """The evaluation's models out of the command's model pool (``BenchmarkModels``)."""

    pool: ModelPool
    user: Any
    judge: Any
    preference_judge: Any
    judge_prompt: str
    judge_sampling: Sampling
    judge_output: str  # prompts.format: json | text
    cases_runner: CasesRunner | None = None  # evaluation.workers > 1

    async def endpoint(self, settings: BackendSettings, *, name: str | None = None) -> ChatModel:
        return await self.pool.backend(settings, name=name)

    def judge_on(self, model: ChatModel) -> SecondJudge:
        return SecondJudge(model, self.judge_prompt, self.judge_sampling, self.judge_output)

    @property
    def spend(self) -> SpendLimit | None:
        return self.pool.spend


def models_of(cfg: DictConfig, p: EvaluationPlan | None = None, workers: int = 1):
    """Opens the user and judge roles (and endpoints) of ``cfg`` on a store; ``workers`` > 1
    (``p`` given): the cases run in that many worker processes."""
    e: EvaluationSettings = to_settings(cfg.get("evaluation"), EvaluationSettings, "evaluation")

    @asynccontextmanager
    async def open_models(store: Store) -> AsyncIterator[_Models]:
        async with model_pool(cfg, store) as pool:
            roles = make_roles(cfg, {"user": await pool.for_role(cfg, "user")})
            judge, preference = await make_judges(cfg, pool, e)
            runner = None
            if p is not None and p.model.backend is not None and e.engine == "ray":
                from .._eval_workers import cases_on_ray

                runner = cases_on_ray(cfg, store, p.model.backend, str(p.model.identity["name"]), p.spec,
                                      e.ray_address, e.workers)
            elif workers > 1 and p is not None and p.model.backend is not None:
                from .._eval_workers import cases_in_workers

                runner = cases_in_workers(cfg, store, pool, p.model.backend, str(p.model.identity["name"]), p.spec,
                                          workers)
            yield _Models(pool, roles["user"], judge, preference, str(cfg.prompts.judge), role_sampling(cfg, "judge"),
                          prompt_format(cfg), runner)

    return open_models


# the config key of each role of an evaluation's calls (EVALUATION_ROLES), for messages
_ROLE_KEYS = {"user": "agents.user", "evaluated": "model", "judge": "agents.judge", "judge_check": "agents.judge",
              "judge_check_preference": "agents.preference_judge", "second_judge": "evaluation.second_judge"}


def role_models(cfg: DictConfig, p: EvaluationPlan, *, check_key: bool = True
                ) -> dict[str, tuple[str, str, BackendSettings | None]]:
    """Per role of the evaluation's calls: its (model, backend kind, settings; None for model=hf)."""
    def of(s: BackendSettings) -> tuple[str, str, BackendSettings]:
        return s.model, s.kind, s

    judge = of(role_backend_settings(cfg, "judge", check_key=check_key))
    out = {"user": of(role_backend_settings(cfg, "user", check_key=check_key)),
           "evaluated": of(p.model.backend) if p.model.backend is not None else
           (str(p.model.identity["name"]), "hf", None)}
    out["judge"] = judge
    if p.judge_check.enabled and p.judge_check.pairs:
        out["judge_check"] = judge
        if p.judge_check.preference:
            out["judge_check_preference"] = of(role_backend_settings(cfg, "preference_judge", check_key=check_key))
    if p.second_judge is not None:
        out["second_judge"] = of(p.second_judge)
    return out


def dry_run(cfg: DictConfig) -> int:
    """``aloe evaluate dry_run=true``: the planned calls, tokens and dollars per role; nothing called, loaded
    or written."""
    p = plan(cfg, dry_run=True)
    models = role_models(cfg, p, check_key=False)
    limits = {"user": role_settings(cfg, "user").max_tokens, "evaluated": p.model.sampling.max_tokens,
              "judge": role_settings(cfg, "judge").max_tokens,
              "preference_judge": role_settings(cfg, "preference_judge").max_tokens}
    check = p.judge_check
    probes = check.pairs if check.enabled else 0
    dry = plan_evaluation(cfg, [c.persona() for c in p.cases], p.spec.turns, {k: v[:2] for k, v in models.items()},
                          limits, probes=probes, preference_probes=probes if check.preference else 0)
    for line in dry.lines():
        print(f"aloe evaluate: {line}", file=sys.stderr)
    print(json.dumps(dry.as_dict()))
    return 0


def worker_processes(cfg: DictConfig, p: EvaluationPlan, e: EvaluationSettings) -> int:
    """How many processes run the cases (``evaluation.workers``; see ``_eval_workers``)."""
    from .._eval_workers import CASES_PER_WORKER
    from .._workers import worker_count

    limit = spend_limit_of(cfg)
    if (e.workers or 1) > 1 or e.engine == "ray":
        if limit is not None:  # one spend counter: N processes would each spend up to the limit
            raise ConfigError("budget.usd", limit.usd, "unset with evaluation.workers > 1 or evaluation.engine=ray "
                              "(a budget is kept by one process: leave evaluation.workers unset or 1)")
        if p.model.kind == "hf":
            key, value = ("evaluation.engine", "ray") if e.engine == "ray" else ("evaluation.workers", e.workers)
            raise ConfigError(key, value, "local and evaluation.workers unset or 1 with model=hf (a checkpoint "
                              "loaded in process; serve it with model=vllm or embedded to use worker processes)")
    if e.engine == "ray":
        from .._ray import check_ray_address

        check_ray_address(e.ray_address, "evaluation")  # nothing answers there: one line, nothing written
    return worker_count(e, len(p.cases), one_process=limit is not None or p.model.kind == "hf",
                        per_worker=CASES_PER_WORKER)


def run(cfg: DictConfig) -> int:
    if cfg.get("dry_run", False):
        return dry_run(cfg)
    p = plan(cfg)
    lease = lease_settings(cfg)
    e: EvaluationSettings = to_settings(cfg.get("evaluation"), EvaluationSettings, "evaluation")
    workers = worker_processes(cfg, p, e)
    check_budget_priced(cfg, {_ROLE_KEYS[r]: s for r, (_, _, s) in role_models(cfg, p).items() if s is not None})
    endpoints = [role_backend_settings(cfg, "user"), judge_backend(cfg, e)[0]]
    endpoints += [s for s in (p.model.backend, p.second_judge) if s is not None]
    check_reachable(endpoints)  # a server down now: one line, nothing written
    summary = run_interruptible(partial(evaluate, lease=lease), p, cfg.db, models_of(cfg, p, workers))
    end_of_command(json_safe(json.dumps(summary, ensure_ascii=False)), lambda: evaluate_lines(str(cfg.db), summary))
    warn_if_unreliable(summary["judge_check"])
    # like `aloe generate`: 3 = finished, but some cases failed (re-run to continue them)
    return 3 if summary["failed_cases"] else 0
