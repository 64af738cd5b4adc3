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


def test_generate_on_the_oracle_world_grows_trees_whose_truth_is_known(tmp_path, capsys) -> None:
    """`aloe personas` + `aloe generate` through the real CLI commands: the
    inferred persona grows one fact per turn, the preferred reply covers the
    revealed facts and the rejected one none, and the planted leaks are the
    stored user messages that recite the profile."""
    import json
    import sqlite3

    from aloesim.orchestration import compose_config
    from aloesim.orchestration.commands import generate, personas
    from tests.support.oracle_world import write_benchmark

    world = OracleWorld(leak_rate=0.25, seed=2)
    p, q = write_benchmark(tmp_path)
    db = tmp_path / "g.db"
    with world as url:
        w = [f"db={db}", "backend=openai", f"backend.base_url={url}", "backend.api_key_env=null",
             "backend.model=oracle"]
        assert personas.run(compose_config("personas", [*w, f"import.profiles={p}", f"import.personalities={q}",
                                                        "filter=false", "personas.seeds=false",
                                                        "personas.pairs=6"])) == 0
        assert generate.run(compose_config("generate", [*w, "generation.trees=6", "generation.turns=4"])) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["trees_complete"] == 6 and summary["nodes"] == 24
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT n.turn, n.user_message, n.inferred_profile, n.preferred, n.rejected, pr.text, n.tree_id FROM nodes n"
        " JOIN trees t ON t.id = n.tree_id JOIN personas s ON s.id = t.persona_id"
        " JOIN persona_items pr ON pr.id = s.profile_id ORDER BY n.tree_id, n.turn").fetchall()
    conn.close()
    leaked = [r for r in rows if r[5] in r[1]]
    assert len(leaked) == world.planted("leak", role="user") > 0
    for _turn, message, inferred, preferred, rejected, profile, _tree in rows:
        assert coverage(profile, rejected)[0] == 0
        revealed = len(inferred.split("; ")) if inferred else 0
        assert coverage(profile, preferred)[0] == revealed
        if profile not in message:
            assert message.startswith("Fun fact about me:")
    # without leaks the inferred persona grows by exactly one fact per turn
    clean = [r for r in rows if not any(x[5] in x[1] for x in rows if x[6] == r[6] and x[0] <= r[0])]
    assert len(clean) > 6 and all(r[2] is not None and len(r[2].split("; ")) == r[0] for r in clean)
