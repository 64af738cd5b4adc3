"""The judge validity check with scripted judges of known behaviour: one that
reads the persona scores ~1.0; constant, random, length-biased and
position-biased ones score ~0.5 and are flagged unreliable."""

from __future__ import annotations

import random
import re
from importlib import resources

import pytest
from omegaconf import OmegaConf

from aloesim.agents import AlignmentJudge, PreferenceJudge, UserSimulator
from aloesim.agents.gateway import Sampling
from aloesim.agents.testing import ScriptedModel, ScriptedRequest
from aloesim.environment.store import JudgeProbes, Store
from aloesim.evaluation import (
    BenchmarkSpec,
    Case,
    JudgeCheckSettings,
    cases_from_files,
    run_benchmark,
    run_judge_check,
    summarize_probes,
)
from aloesim.evaluation._judge_check import wilson
from aloesim.evaluation._probes import build_probe, persona_pool, pieces

pytestmark = pytest.mark.anyio

PROMPTS = OmegaConf.create(resources.files("aloesim.conf").joinpath("prompts", "paper.yaml").read_text())
SEEDS = resources.files("aloesim.environment.personas").joinpath("seeds")
CASES = cases_from_files(str(SEEDS / "eval_profiles.jsonl"), str(SEEDS / "eval_personalities.jsonl"))


def _field(text: str, label: str, end: str) -> str:
    return text.split(label, 1)[1].split(end, 1)[0]


def facts_in(profile: str, reply: str) -> int:
    return sum(p.lower() in reply.lower() for p in pieces(profile))


# --- scripted judges: the ALOE judge prompt (B.3) -> {"score": N} ---------------------------------------
def reader(req: ScriptedRequest) -> dict:
    text = req.messages[0]["content"]
    profile = _field(text, "Here is the user's profile: ", "\n")
    reply = _field(text, "Here is the model's response: ", "\nYou should follow")
    return {"score": min(5, 1 + 2 * facts_in(profile, reply))}


def constant(req: ScriptedRequest) -> dict:
    return {"score": 3}


def uniform(req: ScriptedRequest) -> dict:
    return {"score": random.Random(req.messages[0]["content"] + str(req.sampling.seed)).randint(1, 5)}


def longer_is_better(req: ScriptedRequest) -> dict:
    reply = _field(req.messages[0]["content"], "Here is the model's response: ", "\nYou should follow")
    return {"score": min(5, max(1, len(reply) // 60))}


# --- scripted pairwise judges: the preference prompt -> {"better": "A"|"B"} --------------------------------
def pair_reader(req: ScriptedRequest) -> dict:
    text = req.messages[0]["content"]
    profile = _field(text, "Here is the user's profile: ", "\n")
    a, b = _field(text, "Response A: ", "\nResponse B: "), _field(text, "Response B: ", "\nWhich response")
    return {"better": "A" if facts_in(profile, a) >= facts_in(profile, b) else "B"}


def first_position(req: ScriptedRequest) -> dict:
    return {"better": "A"}


async def check(tmp_path, script, *, pairs: int = 40, pref_script=None, threshold: float = 0.75) -> tuple[dict, list]:
    model = ScriptedModel(script)
    judge = AlignmentJudge(model, PROMPTS.judge, Sampling(temperature=0, max_tokens=16))
    pref = PreferenceJudge(ScriptedModel(pref_script), PROMPTS.preference) if pref_script else None
    tmp_path.mkdir(parents=True, exist_ok=True)
    async with Store.open(tmp_path / "c.db") as store:
        eval_id = await _evaluation(store)
        rows = await run_judge_check(store, eval_id, CASES, judge, preference_judge=pref, seed=3,
                                     settings=JudgeCheckSettings(pairs=pairs, threshold=threshold,
                                                                 preference=pref is not None))
    return summarize_probes(rows, threshold=threshold), model.requests


async def _evaluation(store: Store) -> int:
    """A real stored evaluation (one scripted turn) for the probes to belong to."""
    user = UserSimulator(ScriptedModel(lambda r: "hello"), PROMPTS.user)
    judge = AlignmentJudge(ScriptedModel(constant), PROMPTS.judge)
    out = await run_benchmark(store, CASES[:1], user=user, judge=judge, model=ScriptedModel(lambda r: "hi"),
                              spec=BenchmarkSpec(label="x", turns=1))
    return out.evaluation_id


async def test_a_judge_that_reads_the_persona_is_reliable(tmp_path) -> None:
    verdict, requests = await check(tmp_path, reader)
    assert verdict["pairs"] == 40 and verdict["accuracy"] == 1.0 and verdict["reliable"] is True
    assert verdict["by_kind"]["persona_swap"]["pairs"] == 20 and verdict["by_kind"]["reply_swap"]["pairs"] == 20
    assert verdict["ci"][0] > 0.9 and verdict["ci"][1] == 1.0
    assert len(requests) == 80 and {r.role for r in requests} == {"judge_check"}   # recorded as judge_check


@pytest.mark.parametrize("script", [constant, uniform, longer_is_better], ids=["constant", "random", "length"])
async def test_judges_blind_to_the_persona_score_a_half_and_are_flagged(tmp_path, script) -> None:
    verdict, _ = await check(tmp_path, script, pairs=200)
    assert abs(verdict["accuracy"] - 0.5) <= 0.08, verdict
    assert verdict["reliable"] is False and "do not measure alignment" in verdict["reason"]
    if script is constant:
        assert verdict["accuracy"] == 0.5 and verdict["ties"] == 200


async def test_pairwise_judges_position_bias_cancels_under_order_swaps(tmp_path) -> None:
    verdict, _ = await check(tmp_path, reader, pref_script=first_position, pairs=30)
    pref = verdict["preference"]
    assert pref["pairs"] == 30 and pref["accuracy"] == 0.5 and pref["reliable"] is False   # right once per probe
    verdict, _ = await check(tmp_path / "2", reader, pref_script=pair_reader, pairs=30)
    assert verdict["preference"]["accuracy"] == 1.0 and verdict["preference"]["reliable"] is True
    assert verdict["reliable"] is True   # the ALOE judge's verdict stands apart from the pairwise one


async def test_probes_are_stored_and_a_rerun_only_adds_what_is_missing(tmp_path) -> None:
    model = ScriptedModel(reader)
    judge = AlignmentJudge(model, PROMPTS.judge, Sampling(temperature=0))
    async with Store.open(tmp_path / "c.db") as store:
        eval_id = await _evaluation(store)
        await run_judge_check(store, eval_id, CASES, judge, settings=JudgeCheckSettings(pairs=10))
        assert len(model.requests) == 20
        await run_judge_check(store, eval_id, CASES, judge, settings=JudgeCheckSettings(pairs=10))
        assert len(model.requests) == 20                      # nothing redone
        rows = await run_judge_check(store, eval_id, CASES, judge, settings=JudgeCheckSettings(pairs=14))
        assert len(model.requests) == 28 and len(rows) == 14  # only the 4 new probes
        stored = await store.read(lambda c: JudgeProbes(c).of(eval_id))
    assert summarize_probes(stored, pairs=10)["pairs"] == 10


async def test_failed_probe_calls_are_kept_and_retried_later(tmp_path) -> None:
    calls = {"n": 0}

    def flaky(req: ScriptedRequest):
        calls["n"] += 1
        return RuntimeError("judge down") if calls["n"] <= 6 else reader(req)

    judge = AlignmentJudge(ScriptedModel(flaky), PROMPTS.judge, Sampling(temperature=0))
    async with Store.open(tmp_path / "c.db") as store:
        eval_id = await _evaluation(store)
        rows = await run_judge_check(store, eval_id, CASES, judge, settings=JudgeCheckSettings(pairs=8),
                                     concurrency=1)
        first = summarize_probes(rows)
        failed = [r for r in rows if r.outcome is None]
        rows = await run_judge_check(store, eval_id, CASES, judge, settings=JudgeCheckSettings(pairs=8))
    assert first["failed"] == len(failed) >= 3 and first["pairs"] == 8 - first["failed"]
    assert all("judge down" in r.error for r in failed)
    assert summarize_probes(rows)["pairs"] == 8 and summarize_probes(rows)["failed"] == 0


def test_probe_texts_name_only_the_right_persona() -> None:
    pool = persona_pool(CASES)
    for kind in ("persona_swap", "reply_swap"):
        for i in range(20):
            p = build_probe(pool, 0, kind, i)
            assert p.persona_a.profile != p.persona_b.profile and p.message
            assert facts_in(p.persona_a.profile, p.reply_a) >= 1 and facts_in(p.persona_b.profile, p.reply_a) == 0
            assert facts_in(p.persona_b.profile, p.reply_b) >= 1 and facts_in(p.persona_a.profile, p.reply_b) == 0
            mirror = build_probe(pool, 0, kind, i ^ 1)
            assert {mirror.case_a, mirror.case_b} == {p.case_a, p.case_b} and mirror.case_a == p.case_b
            assert build_probe(pool, 0, kind, i) == p   # a function of (cases, seed, kind, index)


def test_one_profile_gets_built_in_contrast_personas() -> None:
    pool = persona_pool([Case(0, "A lone lighthouse keeper who paints gulls, knits scarves", "Quiet, kind")])
    p = build_probe(pool, 0, "persona_swap", 0)
    assert len(pool) == 4 and (p.case_a is None) != (p.case_b is None)


def test_wilson_interval() -> None:
    lo, hi = wilson(40, 40)
    assert 0.91 < lo < 0.92 and hi == 1.0
    lo, hi = wilson(20, 40)
    assert abs((lo + hi) / 2 - 0.5) < 1e-9 and 0.35 < lo < 0.36
    assert wilson(0, 0) == (None, None)
    assert re.search(r"\d", summarize_probes([], enabled=False)["reason"]) is None
