"""``aloe evaluate``: run the ALOE benchmark and write its report.

    aloe evaluate db=run.db benchmark.profiles=eval_profiles.jsonl \\
        benchmark.personalities=eval_personalities.jsonl benchmark.cases=10 benchmark.turns=5 \\
        model=hf model.path=runs/dpo/final evaluation.label=DPO evaluation.out_dir=reports/dpo

Everything the user gives is checked first (numbers, files, the model
choice, the labels CSV); a mistake is one line and nothing is written.
Re-running the same command continues the stored evaluation. Prints one
JSON line: evaluation id, status, summary metrics and the report files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from omegaconf import DictConfig, OmegaConf

from ...agents import AlignmentJudge
from ...agents.gateway import BackendSettings, ChatModel, Sampling
from ...core.errors import ConfigError
from ...environment.store import Store, connect
from ...evaluation import (
    BenchmarkSpec,
    Case,
    build_report,
    cases_from_db,
    cases_from_files,
    load_evaluation,
    metrics,
    rejudge,
    run_benchmark,
    run_judge_check,
    write_report,
)
from .._judging import JudgeOptions, judge_options, make_judges, summary_fields, warn_if_unreliable
from .._models import (
    backend_preset,
    check_reachable,
    make_roles,
    model_pool,
    role_backend_settings,
    role_sampling,
)

HELP = "run the ALOE benchmark (role-play user x evaluated model, LLM judge) and write its report"

log = structlog.get_logger(__name__)

MODEL_KINDS = ("embedded", "openai", "vllm", "hf")
_SAMPLING_KEYS = ("temperature", "max_tokens", "top_p")
_NOT_BACKEND = {"kind", "name", "path", "gguf_file", "device", "dtype", *_SAMPLING_KEYS}


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _int(value: Any, key: str, allowed: str, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, value, allowed)
    return value


@dataclass(frozen=True)
class EvaluatedModel:
    """The evaluated model's settings, checked: ``backend`` for an
    OpenAI-compatible endpoint, or the hf fields."""

    kind: str
    sampling: Sampling
    identity: dict[str, Any]
    backend: BackendSettings | None = None
    hf: dict[str, Any] | None = None


def model_sampling(m: Mapping[str, Any]) -> Sampling:
    s = Sampling(temperature=m.get("temperature", 0.7), max_tokens=m.get("max_tokens", 256), top_p=m.get("top_p", 1.0))
    if not isinstance(s.temperature, (int, float)) or not 0 <= s.temperature <= 2:
        raise ConfigError("model.temperature", s.temperature, "a number in [0, 2]")
    _int(s.max_tokens, "model.max_tokens", "an integer >= 1", 1)
    if not isinstance(s.top_p, (int, float)) or not 0 < s.top_p <= 1:
        raise ConfigError("model.top_p", s.top_p, "a number in (0, 1]")
    return s


def evaluated_model(cfg: DictConfig) -> EvaluatedModel:
    """Check ``cfg.model`` and resolve it to settings (no server started)."""
    m: dict[str, Any] = _plain(cfg.get("model")) or {}
    kind = m.get("kind")
    if kind not in MODEL_KINDS:
        raise ConfigError("model.kind", kind, " | ".join(MODEL_KINDS))
    sampling = model_sampling(m)
    if kind == "hf":
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            raise ConfigError("model", "hf", "a backend whose packages are installed (model=hf needs "
                                             "pip install 'aloesim[train]': torch, transformers)")
        path = m.get("path")
        if not path:
            raise ConfigError("model.path", path, "the directory of a Hugging Face checkpoint (model=hf model.path=DIR)")
        p = Path(str(path)).expanduser()
        if not p.is_dir():
            raise ConfigError("model.path", str(path), "an existing checkpoint directory")
        gguf = m.get("gguf_file")
        if gguf is not None and not (p / gguf).is_file():
            raise ConfigError("model.gguf_file", gguf, f"a GGUF file inside {p}")
        if gguf is None and not (p / "config.json").is_file():
            raise ConfigError("model.path", str(path), "a checkpoint directory with config.json (or set model.gguf_file)")
        if m.get("dtype", "auto") not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError("model.dtype", m.get("dtype"), "auto | float32 | bfloat16 | float16")
        hf = {"path": str(p.resolve()), "gguf_file": gguf, "name": m.get("name") or p.name,
              "device": m.get("device", "cpu"), "dtype": m.get("dtype", "auto"),
              "max_retries": int(m.get("max_retries", 2))}
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
    if settings.gguf:
        identity["gguf"] = settings.gguf
    return EvaluatedModel(kind, sampling, identity, backend=settings)


def _role_identity(cfg: DictConfig, role: str, prompt_key: str) -> dict[str, Any]:
    s = role_backend_settings(cfg, role)
    prompt = str((cfg.get("prompts") or {}).get(prompt_key) or "")
    ident = {"kind": s.kind, "name": s.model, "sampling": role_sampling(cfg, role).as_params(),
             "prompt_sha": hashlib.sha256(prompt.encode()).hexdigest()[:12]}
    if s.urls:
        ident["base_url"] = ",".join(s.urls)
    if s.gguf:
        ident["gguf"] = s.gguf
    return ident


def select_cases(cfg: DictConfig) -> list[Case]:
    """The benchmark cases: from the two files, or the database's eval split;
    the first ``benchmark.cases``."""
    b = cfg.benchmark
    profiles, personalities = b.get("profiles"), b.get("personalities")
    n = _int(b.get("cases"), "benchmark.cases", "null (all) or an integer >= 1", 1, allow_none=True)
    if (profiles is None) != (personalities is None):
        missing = "benchmark.personalities" if personalities is None else "benchmark.profiles"
        raise ConfigError(missing, None, "a file too (profiles and personalities go together), or neither for the DB")
    if profiles is not None:
        cases = cases_from_files(str(profiles), str(personalities))
        source = "files"
    else:
        conn = connect(cfg.db, create=False)
        try:
            cases = cases_from_db(conn)
        finally:
            conn.close()
        source = f"the eval split of {cfg.db}"
        if not cases:
            raise ConfigError("benchmark.profiles", None,
                              f"files of evaluation profiles and personalities (no eval personas in {cfg.db})")
    if n is not None:
        if n > len(cases):
            raise ConfigError("benchmark.cases", n, f"at most {len(cases)} (the cases in {source})")
        cases = cases[:n]
    return cases


@dataclass(frozen=True)
class Plan:
    cases: list[Case]
    spec: BenchmarkSpec
    model: EvaluatedModel
    out_dir: Path
    n_boot: int
    level: float
    labels: dict[tuple[int, int], int] | None
    second_judge: BackendSettings | None = None
    judge: JudgeOptions = field(default_factory=JudgeOptions)


def second_judge_settings(cfg: DictConfig) -> BackendSettings | None:
    """The backend of ``evaluation.second_judge`` (None when not set)."""
    e = cfg.evaluation
    choice = e.get("second_judge")
    if choice is None:
        return None
    if e.get("labels"):
        raise ConfigError("evaluation.second_judge", choice, "null when evaluation.labels is set (kappa against one of them)")
    if not isinstance(choice, str):
        raise ConfigError("evaluation.second_judge", choice, "default | embedded | openai | vllm")
    base = (_plain(cfg.get("backend")) or {}) if choice == "default" else backend_preset(choice)
    if e.get("second_judge_model"):
        base["model"] = e.second_judge_model
    return BackendSettings.from_config(base, prefix="evaluation.second_judge")


class SecondJudge(AlignmentJudge):
    """The benchmark judge's prompt on another model; its calls are recorded as ``second_judge``."""

    role = "second_judge"


def plan(cfg: DictConfig) -> Plan:
    """Check everything the user gave; no file or database is written."""
    turns = _int(cfg.benchmark.get("turns"), "benchmark.turns", "an integer >= 1", 1)
    e = cfg.evaluation
    concurrency = _int(e.get("concurrency"), "evaluation.concurrency", "an integer >= 1", 1)
    n_boot = _int(e.get("bootstrap"), "evaluation.bootstrap", "an integer >= 100", 100)
    level = e.get("ci_level", 0.95)
    if not isinstance(level, float) or not 0.5 <= level < 1:
        raise ConfigError("evaluation.ci_level", level, "a number in [0.5, 1)")
    out_dir = e.get("out_dir")
    if not out_dir:
        raise ConfigError("evaluation.out_dir", out_dir, "a folder for the report files")
    out = Path(str(out_dir)).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError("evaluation.out_dir", str(out_dir), "a folder (this path is a file)")
    model = evaluated_model(cfg)
    user_ident = _role_identity(cfg, "user", "user")
    judge_ident = _role_identity(cfg, "judge", "judge")
    second = second_judge_settings(cfg)
    labels = metrics.read_labels(str(e.labels)) if e.get("labels") else None
    cases = select_cases(cfg)
    label = e.get("label") or model.identity["name"]
    config = {k: v for k, v in _plain(cfg).items() if k not in ("log",)}
    spec = BenchmarkSpec(label=str(label), turns=turns, concurrency=concurrency, seed=int(cfg.get("seed", 0)),
                         sampling=model.sampling, model=model.identity, user_model=user_ident,
                         judge_model=judge_ident, config=config)
    spec.validate()
    return Plan(cases, spec, model, out, n_boot, level, labels, second, judge_options(cfg))


def run(cfg: DictConfig) -> int:
    p = plan(cfg)
    endpoints = [role_backend_settings(cfg, "user"), role_backend_settings(cfg, "judge")]
    endpoints += [s for s in (p.model.backend, p.second_judge) if s is not None]
    check_reachable(endpoints)  # a server down now: one line, nothing written
    summary = anyio.run(_evaluate, cfg, p)
    print(json.dumps(summary, ensure_ascii=False))
    warn_if_unreliable(summary["judge_check"])
    # like `aloe generate`: 3 = finished, but some cases failed (re-run to continue them)
    return 3 if summary["failed_cases"] else 0


async def _evaluate(cfg: DictConfig, p: Plan) -> dict[str, Any]:
    async with Store.open(cfg.db) as store:
        async with model_pool(cfg, store) as pool:
            roles = make_roles(cfg, {"user": await pool.for_role(cfg, "user")})
            judge, preference = await make_judges(cfg, pool, p.judge)

            async def check(eval_id: int, run_id: int) -> None:
                if p.judge.check.enabled:
                    await run_judge_check(store, eval_id, p.cases, judge, settings=p.judge.check, seed=p.spec.seed,
                                          run_id=run_id, preference_judge=preference,
                                          concurrency=p.spec.concurrency)
            if p.model.kind == "hf":
                from ...agents.gateway import StoreRecorder
                from ...agents.hf import HFChatModel

                hf = p.model.hf or {}
                evaluated: ChatModel = HFChatModel(hf["path"], gguf_file=hf["gguf_file"], name=hf["name"],
                                                   device=hf["device"], dtype=hf["dtype"],
                                                   max_retries=hf["max_retries"], recorder=StoreRecorder(store))
                await evaluated.load()
            else:
                assert p.model.backend is not None
                evaluated = await pool.backend(p.model.backend, name=p.model.identity["name"])
            outcome = await run_benchmark(store, p.cases, user=roles["user"], judge=judge,
                                          model=evaluated, spec=p.spec, alongside=check)
            labels, source = p.labels, f"labels {cfg.evaluation.labels}" if p.labels is not None else "labels"
            if p.second_judge is not None:
                judge2 = SecondJudge(await pool.backend(p.second_judge), str(cfg.prompts.judge),
                                     role_sampling(cfg, "judge"))
                labels = await rejudge(store, outcome.evaluation_id, judge2, concurrency=p.spec.concurrency,
                                       seed=p.spec.seed, run_id=outcome.run_id)
                source = f"second judge {p.second_judge.kind}:{p.second_judge.model}"
        data = await load_evaluation(store, outcome.evaluation_id)
        faults = await store.fetchone(  # the run's totals, over every invocation (as `aloe runs` shows them)
            "SELECT COALESCE(SUM(CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0),"
            " COALESCE(SUM(error IS NOT NULL), 0) FROM llm_calls WHERE run_id = ?", (outcome.run_id,))
        report = await anyio.to_thread.run_sync(
            lambda: build_report([data], n_boot=p.n_boot, seed=p.spec.seed, level=p.level, labels=labels,
                                 labels_source=source, scoring=p.judge.scoring,
                                 judge_threshold=p.judge.check.threshold, judge_check=p.judge.check.enabled))
        text = json.dumps(report, ensure_ascii=False)
        await store.write(lambda c: c.execute("UPDATE evaluations SET report = ? WHERE id = ?",
                                              (text, outcome.evaluation_id)))
    paths = await anyio.to_thread.run_sync(write_report, report, p.out_dir)
    entry = report["evaluations"][0]
    return {
        "evaluation_id": outcome.evaluation_id, "status": entry["status"], "resumed": outcome.resumed,
        "cases": entry["cases"], "turns": entry["turns"], "summary": entry["summary"],
        "al": [t["al"] for t in entry["al"]], "judge_failures": entry["failures"]["judge"],
        "failed_cases": entry["failures"]["cases"], "retries": faults[0], "call_failures": faults[1],
        "seconds": round(outcome.seconds, 1),
        **({"kappa": entry["kappa"]} if "kappa" in entry else {}),
        **summary_fields(report),
        "report": {k: str(v) for k, v in paths.items()},
    }
