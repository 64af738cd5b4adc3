"""The oracle world's own rules (tests/support/oracle_world.py), over real HTTP
through the real gateway: what each role answers, and that planted faults
arrive at the rates asked for."""

from __future__ import annotations

import itertools
from importlib import resources

import pytest
from omegaconf import OmegaConf

from aloesim.agents import AlignmentJudge, Inducer, PreferredResponder, RejectedResponder, UserSimulator
from aloesim.agents.gateway import Backend, BackendSettings, Sampling
from aloesim.environment import Persona
from tests.support.oracle_world import (
    ADAPTING,
    PERSONALITIES,
    PROFILES,
    OracleWorld,
    coverage,
    facts,
    keywords,
)

pytestmark = pytest.mark.anyio

PROMPTS = OmegaConf.create(resources.files("aloesim.conf").joinpath("prompts", "paper.yaml").read_text())
PERSONA = Persona(id=1, profile=PROFILES[0], personality=PERSONALITIES[0])


def backend(url: str, model: str = "oracle") -> Backend:
    s = BackendSettings(kind="openai", model=model, base_url=url, dialect="openai", max_retries=2,
                        backoff_base=0.01, backoff_max=0.05)
    return Backend(s, [url], cache=False)


def test_facts_and_keywords() -> None:
    fs = facts(PROFILES[0])
    assert len(fs) == 6 and fs[1] == "restores vintage bicycles in a garage workshop"
    assert keywords(fs[1]) == ["restores", "vintage", "bicycles", "garage", "workshop"]
    assert coverage(PROFILES[0], "vintage bicycles in a garage, lisbon rooftop") == (2, 6)
    assert coverage(PROFILES[1], "vintage bicycles in a garage, lisbon rooftop") == (0, 6)


async def test_roles_follow_their_rules() -> None:
    with OracleWorld() as url:
        b = backend(url)
        user = UserSimulator(b, PROMPTS.user, Sampling(max_tokens=64))
        inducer = Inducer(b, PROMPTS.inducer, Sampling(temperature=0, max_tokens=200))
        judge = AlignmentJudge(b, PROMPTS.judge, Sampling(temperature=0, max_tokens=16))
        conv: list[dict[str, str]] = []
        for k in range(3):
            m = await user(PERSONA, conv)
            assert m.startswith("Fun fact about me:")
            # revealing, not reciting: no two consecutive words of the profile
            words = m.lower().replace(",", "").split()
            assert not any(f"{a} {b_}" in PROFILES[0].lower() for a, b_ in itertools.pairwise(words))
            conv += [{"role": "user", "content": m}, {"role": "assistant", "content": "ok"}]
            inferred = await inducer(PERSONA, conv)
            assert inferred.profile == "; ".join(facts(PROFILES[0])[: k + 1]) and inferred.personalities is None
        preferred = await PreferredResponder(b, PROMPTS.preferred)(conv, "hi", inferred)
        rejected = await RejectedResponder(b, PROMPTS.rejected)(conv, "hi")
        assert coverage(PROFILES[0], preferred)[0] == 3 and coverage(PROFILES[0], rejected)[0] == 0
        assert len(preferred.split()) == len(rejected.split()) == 60   # no length bias unless planted
        assert await judge(PERSONA, "hi", preferred) == 3     # 1 + ceil(4 * 3/6)
        assert await judge(PERSONA, "hi", rejected) == 1
        adapting = await backend(url, ADAPTING).chat(conv + [{"role": "user", "content": "hi"}], role="evaluated")
        assert coverage(PROFILES[0], adapting.text)[0] == 3


async def test_planted_faults_arrive_at_their_rates() -> None:
    world = OracleWorld(leak_rate=0.2, role_flip_rate=0.1, truncate_rate=0.25, duplicate_rate=0.1, seed=5)
    with world as url:
        b = backend(url)
        user = UserSimulator(b, PROMPTS.user, Sampling(max_tokens=64))
        personas = [Persona(id=i, profile=p, personality=PERSONALITIES[0]) for i, p in enumerate(PROFILES)]
        cut = 0
        for i in range(400):
            m = await user(personas[i % 6], [], seed=i)
            if "Here is everything about me" in m:
                assert PROFILES[i % 6] in m              # a leak recites the profile verbatim
            out = await b.chat([{"role": "user", "content": f"message {i}"}], role="rejected",
                               sampling=Sampling(seed=i))
            cut += not out.text.endswith(".")   # a cut reply lost its last word and full stop
    n_user, n_plain = world.count("user"), world.count("plain")
    assert n_user == n_plain == 400
    assert abs(world.planted("leak") / n_user - 0.2) < 0.06
    # a role flip is drawn only where no leak was: 0.8 * 0.1 of the messages
    assert abs(world.planted("role_flip") / n_user - 0.08) < 0.04
    assert abs(world.planted("duplicate") / n_plain - 0.1) < 0.05
    truncated = world.planted("truncated")
    assert abs(truncated / n_plain - 0.9 * 0.25) < 0.07 and cut == truncated
    assert all(s.finish_reason == "length" for s in world.served if s.fault == "truncated")
