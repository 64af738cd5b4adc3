"""The judge check and the judge's score distribution on the real embedded
model (SmolLM2-135M-Instruct through llama.cpp's server): the judge is
measured and flagged; a server started with logits_all returns the
distribution, one without refuses the request."""

from __future__ import annotations

from importlib import resources

import pytest
from omegaconf import OmegaConf

from aloesim.agents import AlignmentJudge, UserSimulator
from aloesim.agents.gateway import Backend, BackendSettings, Sampling
from aloesim.agents.servers import embedded_servers
from aloesim.agents.testing import ScriptedModel
from aloesim.core.errors import LLMError
from aloesim.environment.store import Store
from aloesim.evaluation import (
    BenchmarkSpec,
    JudgeCheckSettings,
    cases_from_files,
    run_benchmark,
    run_judge_check,
    summarize_probes,
)
from aloesim.evaluation._probes import build_probe, persona_pool

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PROMPTS = OmegaConf.create(resources.files("aloesim.conf").joinpath("prompts", "paper.yaml").read_text())
SEEDS = resources.files("aloesim.environment.personas").joinpath("seeds")
CASES = cases_from_files(str(SEEDS / "eval_profiles.jsonl"), str(SEEDS / "eval_personalities.jsonl"))


def backend(url: str, retries: int = 2) -> Backend:
    return Backend(BackendSettings(kind="embedded", base_url=url, timeout=300.0, max_retries=retries,
                                   backoff_base=0.05, backoff_max=0.2), [url], cache=False)


async def test_the_embedded_judge_is_measured_and_flagged(embedded_url, tmp_path) -> None:
    judge = AlignmentJudge(backend(embedded_url), PROMPTS.judge, Sampling(temperature=0.0, max_tokens=16))
    async with Store.open(tmp_path / "j.db") as store:
        out = await run_benchmark(store, CASES[:1], user=UserSimulator(ScriptedModel(lambda r: "hi"), PROMPTS.user),
                                  judge=AlignmentJudge(ScriptedModel(lambda r: {"score": 3}), PROMPTS.judge),
                                  model=ScriptedModel(lambda r: "hello"), spec=BenchmarkSpec(label="x", turns=1))
        rows = await run_judge_check(store, out.evaluation_id, CASES, judge, settings=JudgeCheckSettings(pairs=16),
                                     concurrency=1)
    verdict = summarize_probes(rows)
    print("embedded judge check:", verdict["accuracy"], verdict["ci"], "ties", verdict["ties"], verdict["by_kind"])
    assert verdict["pairs"] + verdict["failed"] == 16 and verdict["pairs"] >= 12
    # SmolLM2-135M cannot tell a reply written for the persona from one written for another (measured)
    assert verdict["reliable"] is False, verdict


async def test_logits_all_server_returns_the_score_distribution(embedded_url, tmp_path) -> None:
    p = build_probe(persona_pool(CASES), 0, "reply_swap", 0)
    async with embedded_servers(logits_all=True, prompt_cache_mb=0, n_ctx=2048, log_dir=tmp_path) as urls:
        judge = AlignmentJudge(backend(urls[0]), PROMPTS.judge, Sampling(temperature=0.0, max_tokens=16, logprobs=5))
        r = await judge.rate(p.persona_a, p.message, p.reply_a)
    assert 1 <= r.score <= 5 and r.distribution is not None
    assert sum(r.distribution) == pytest.approx(1.0, abs=1e-4) and 1.0 <= r.expected <= 5.0 and 0 < r.mass <= 1
    assert r.distribution[r.score - 1] == max(r.distribution)          # greedy: the sampled score is the mode
    # the shared server (logits_all off) refuses a logprobs request: why the judge gets a server of its own
    plain = AlignmentJudge(backend(embedded_url, retries=0), PROMPTS.judge,
                           Sampling(temperature=0.0, max_tokens=16, logprobs=5))
    with pytest.raises(LLMError, match="HTTP 500"):
        await plain.rate(p.persona_a, p.message, p.reply_a)
