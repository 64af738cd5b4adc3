"""The judge's setup for ``aloe evaluate``: whether the judge is asked for
token log-probabilities (and on which server), the pairwise judge of the
judge check, and what the commands print about the check.

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
from typing import Any

from omegaconf import DictConfig

from ..agents import (
    AlignmentJudge,
    ModelPool,
    PreferenceJudge,
    prompt_format,
    role_backend_settings,
    role_sampling,
)
from ..agents.gateway import BackendSettings
from ..agents.gateway._settings import EmbeddedBackend
from ..evaluation import EvaluationSettings

__all__ = ["judge_backend", "make_judges", "warn_if_unreliable"]

TOP_LOGPROBS = 5


def wants_logprobs(e: EvaluationSettings, s: BackendSettings) -> bool:
    if e.judge_logprobs != "auto":
        return e.judge_logprobs == "true"
    return s.managed or (s.kind == "openai" and any("api.openai.com" in u for u in s.urls))


def judge_server(s: EmbeddedBackend) -> EmbeddedBackend:
    """The embedded judge's own server: it keeps the logits of every token
    (``logits_all``), which costs a buffer of n_ctx x vocabulary floats, so it
    runs a shorter context (judge prompts are well under 2048 tokens) and no
    prompt cache (each cached state would copy that buffer)."""
    return dataclasses.replace(s, n_ctx=min(s.n_ctx, 2048), servers=1, logits_all=True, prompt_cache_mb=0)


def judge_backend(cfg: DictConfig, e: EvaluationSettings) -> tuple[BackendSettings, bool]:
    """The judge's backend settings and whether it is asked for logprobs."""
    s = role_backend_settings(cfg, "judge")
    if not wants_logprobs(e, s):
        return s, False
    if isinstance(s, EmbeddedBackend) and s.managed and not s.logits_all:
        s = judge_server(s)
    return s, True


async def make_judges(cfg: DictConfig, pool: ModelPool, e: EvaluationSettings
                      ) -> tuple[AlignmentJudge, PreferenceJudge | None]:
    """The ALOE judge (asking for logprobs where wanted) and, when the check
    covers it, the pairwise preference judge."""
    s, logprobs = judge_backend(cfg, e)
    sampling = role_sampling(cfg, "judge")
    if logprobs:
        sampling = dataclasses.replace(sampling, logprobs=TOP_LOGPROBS)
    output = prompt_format(cfg)  # prompts.format: the judges answer in JSON or the paper's plain text
    judge = AlignmentJudge(await pool.backend(s), str(cfg.prompts.judge), sampling, output)
    preference = None
    if e.judge_check.enabled and e.judge_check.preference:
        preference = PreferenceJudge(await pool.for_role(cfg, "preference_judge"), str(cfg.prompts.preference),
                                     role_sampling(cfg, "preference_judge"), output)
    return judge, preference


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
