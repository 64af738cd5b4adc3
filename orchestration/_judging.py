"""The judge's setup for ``aloe evaluate``: which scoring AL(k) uses, whether
the judge is asked for token log-probabilities (and on which server), the
judge validity check, and what the command prints about them.

Log-probabilities (``evaluation.judge_logprobs``): ``auto`` asks for them
where the endpoint is known to return them: a managed embedded server (the
judge then gets a llama.cpp server of its own, started with ``logits_all``:
the other roles keep the lighter one; see benchmarks/judge_logprobs.py for
the cost), a managed vLLM server, and the OpenAI API. Any other endpoint
(your own llama.cpp or vLLM server) only with ``true``: a llama.cpp server
started without ``logits_all`` answers HTTP 500 to such a request.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from ..agents import AlignmentJudge, PreferenceJudge
from ..agents.gateway import BackendSettings
from ..core.errors import ConfigError
from ..evaluation import JudgeCheckSettings
from ._models import ModelPool, role_backend_settings, role_sampling

__all__ = ["JudgeOptions", "judge_options", "make_judges", "summary_fields", "warn_if_unreliable"]

SCORINGS = ("sample", "expected")
TOP_LOGPROBS = 5


@dataclass(frozen=True)
class JudgeOptions:
    scoring: str = "sample"
    logprobs: str | bool = "auto"
    check: JudgeCheckSettings = field(default_factory=JudgeCheckSettings)


def judge_options(cfg: DictConfig) -> JudgeOptions:
    """``evaluation.judge_scoring``, ``judge_logprobs`` and ``judge_check``, checked."""
    e = cfg.get("evaluation") or {}
    scoring = e.get("judge_scoring", "sample")
    if scoring not in SCORINGS:
        raise ConfigError("evaluation.judge_scoring", scoring, " | ".join(SCORINGS))
    logprobs = e.get("judge_logprobs", "auto")
    if logprobs not in ("auto", True, False):
        raise ConfigError("evaluation.judge_logprobs", logprobs, "auto | true | false")
    if scoring == "expected" and logprobs is False:
        raise ConfigError("evaluation.judge_scoring", scoring,
                          "sample when evaluation.judge_logprobs=false (expected scores need the logprobs)")
    jc = e.get("judge_check") or {}
    if not isinstance(jc, Mapping):
        raise ConfigError("evaluation.judge_check", jc, "a group with enabled, pairs, threshold, preference")
    check = JudgeCheckSettings(enabled=jc.get("enabled", True), pairs=jc.get("pairs", 32),
                               threshold=jc.get("threshold", 0.75), preference=jc.get("preference", False))
    check.validate()
    return JudgeOptions(scoring, logprobs, check)


def wants_logprobs(opts: JudgeOptions, s: BackendSettings) -> bool:
    if opts.logprobs != "auto":
        return bool(opts.logprobs)
    return s.managed or (s.kind == "openai" and any("api.openai.com" in u for u in s.urls))


def judge_server(s: BackendSettings) -> BackendSettings:
    """The embedded judge's own server: it keeps the logits of every token
    (``logits_all``), which costs a buffer of n_ctx x vocabulary floats, so it
    runs a shorter context (judge prompts are well under 2048 tokens) and no
    prompt cache (each cached state would copy that buffer)."""
    return dataclasses.replace(s, n_ctx=min(s.n_ctx, 2048), servers=1,
                               extra={**s.extra, "logits_all": True, "prompt_cache_mb": 0})


async def make_judges(cfg: DictConfig, pool: ModelPool, opts: JudgeOptions
                      ) -> tuple[AlignmentJudge, PreferenceJudge | None]:
    """The ALOE judge (asking for logprobs where wanted) and, when the check
    covers it, the pairwise preference judge."""
    s = role_backend_settings(cfg, "judge")
    sampling = role_sampling(cfg, "judge")
    if wants_logprobs(opts, s):
        sampling = dataclasses.replace(sampling, logprobs=TOP_LOGPROBS)
        if s.kind == "embedded" and s.managed and not s.extra.get("logits_all"):
            s = judge_server(s)
    judge = AlignmentJudge(await pool.backend(s), str(cfg.prompts.judge), sampling)
    preference = None
    if opts.check.enabled and opts.check.preference:
        preference = PreferenceJudge(await pool.for_role(cfg, "preference_judge"), str(cfg.prompts.preference),
                                     role_sampling(cfg, "preference_judge"))
    return judge, preference


def summary_fields(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the command's JSON line says about the judge and the scoring."""
    check = report["judge_check"]
    entry = report["evaluations"][0]
    out: dict[str, Any] = {
        "judge_reliable": check.get("reliable"),
        "judge_check": {k: check.get(k) for k in ("pairs", "accuracy", "ci", "threshold", "reliable", "reason")},
        "scoring": entry.get("scoring", "sample"),
        "unscored": entry["unscored"]["count"],
        "al_unscored_as_failures": entry["unscored"]["al_as_failures"],
    }
    expected = (entry.get("by_scoring") or {}).get("expected")
    if expected:
        out["expected"] = {"al": expected["al"], "summary": expected["summary"]}
    return out


def warn_if_unreliable(check: Mapping[str, Any], command: str = "evaluate") -> None:
    """One line on stderr when the judge failed its check (``check``: a
    report's ``judge_check``), a note when it was not checked."""
    if check.get("reliable") is False:
        if check.get("pairs"):
            lo, hi = check["ci"]
            why = (f"accuracy {check['accuracy']:.2f} on {check['pairs']} probes, 95% CI {lo:.2f}-{hi:.2f}, "
                   f"needs >= {check['threshold']:.2f} with a lower bound > 0.50")
        else:
            why = "no probe was scored"
        print(f"aloe {command}: warning: the judge failed its check ({why}): AL/IR figures do not measure "
              "alignment; try agents.judge.backend=openai agents.judge.model=gpt-4o", file=sys.stderr)
    elif check.get("reliable") is None:
        print(f"aloe {command}: note: {check['reason']}", file=sys.stderr)
