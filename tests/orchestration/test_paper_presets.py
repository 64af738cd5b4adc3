"""The paper's presets compose and hold the paper's values (issue 14):
``agents=paper`` (300 tokens per call for every role, as the authors' code),
``experiment=paper`` for each command that talks to models (its common part
and its part for that command), ``benchmark=aloe`` and ``training=paper``."""

from __future__ import annotations

import pytest

from aloesim.orchestration import check_config, compose_config

ROLES_300 = ("user", "inducer", "preferred", "rejected", "preference_judge", "judge")


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")


def test_agents_paper_sets_the_authors_limits_for_every_role() -> None:
    agents = check_config(compose_config("generate", ["agents=paper"])).agents
    for role in ROLES_300:
        r = getattr(agents, role)
        assert (r.max_tokens, r.temperature, r.top_p) == (300, 1.0, 1.0), role
    g = agents.generator
    assert (g.max_tokens, g.temperature, g.top_p) == (4096, 0.8, 1.0)
    default = check_config(compose_config("generate", [])).agents
    assert default.user.max_tokens == 96 and default.inducer.max_tokens == 200  # sized for the 135M model


@pytest.mark.parametrize("command", ["generate", "personas", "evaluate"])
def test_experiment_paper_common_part(command: str, tmp_path) -> None:
    more = [f"benchmark.profiles={tmp_path}/p.jsonl", f"benchmark.personalities={tmp_path}/q.jsonl"] \
        if command == "evaluate" else []
    s = check_config(compose_config(command, ["experiment=paper", *more]))
    assert s.backend.kind == "openai" and s.backend.model == "gpt-4o"
    assert all(getattr(s.agents, role).max_tokens == 300 for role in ROLES_300)
    assert s.agents.generator.temperature == 0.8
    assert s.prompts.format == "text" and "JSON" not in s.prompts.judge


def test_experiment_paper_generate_part() -> None:
    g = check_config(compose_config("generate", ["experiment=paper"])).generation
    assert (g.trees, g.turns, g.mode, g.preference_check, g.estimate) == (3310, 10, "path", False, True)
    assert not check_config(compose_config("generate", [])).generation.estimate


def test_experiment_paper_personas_part_imports_unfiltered() -> None:
    s = check_config(compose_config("personas", ["experiment=paper"]))
    assert s.filter is False and s.personas.threshold == 0.6 and s.personas.keep_rate is None
    calibrated = check_config(compose_config("personas", ["experiment=paper", "filter=true",
                                                          "personas.keep_rate=0.9"]))
    assert calibrated.filter and calibrated.personas.keep_rate == 0.9
    assert check_config(compose_config("personas", [])).filter is True


def test_experiment_paper_evaluate_part_is_the_aloe_benchmark(tmp_path) -> None:
    s = check_config(compose_config("evaluate", ["experiment=paper", f"benchmark.profiles={tmp_path}/p.jsonl",
                                                 f"benchmark.personalities={tmp_path}/q.jsonl"]))
    b = s.benchmark
    assert (b.name, b.personalities_per_profile, b.expected_cases, b.turns) == ("ALOE", 5, 100, 10)
    assert s.model.max_tokens == 2048


def test_no_experiment_is_the_default_and_smoke_fits_every_command() -> None:
    assert check_config(compose_config("generate", [])) == check_config(compose_config("generate",
                                                                                       ["experiment=none"]))
    smoke = check_config(compose_config("generate", ["experiment=smoke"]))
    assert (smoke.generation.trees, smoke.generation.turns, smoke.agents.user.max_tokens) == (2, 2, 48)
    assert check_config(compose_config("personas", ["experiment=smoke"])).agents.user.max_tokens == 48
