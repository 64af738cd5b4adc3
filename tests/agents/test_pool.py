"""From config to models: which backend each role talks to, with what sampling."""

from __future__ import annotations

import pytest

from aloesim.agents import (
    AlignmentJudge,
    Inducer,
    PreferredResponder,
    RejectedResponder,
    UserSimulator,
    make_roles,
    open_models,
    role_backend_settings,
    role_sampling,
)
from aloesim.agents.testing import ScriptedModel
from aloesim.core.errors import ConfigError
from aloesim.orchestration import compose_config


def test_roles_default_to_the_top_level_backend() -> None:
    cfg = compose_config("generate", [])
    s = role_backend_settings(cfg, "inducer")
    assert s.kind == "embedded" and s.managed and s.model == "SmolLM2-135M-Instruct"


def test_a_role_can_use_a_preset_and_its_own_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = compose_config("generate", ["agents.judge.backend=openai", "agents.judge.model=gpt-4o-mini"])
    judge = role_backend_settings(cfg, "judge")
    assert (judge.kind, judge.model, judge.api_key_env, judge.dialect) == ("openai", "gpt-4o-mini", "OPENAI_API_KEY", "openai")
    assert role_backend_settings(cfg, "user").kind == "embedded"


def test_unknown_preset_and_bad_values_name_the_key() -> None:
    cfg = compose_config("generate", ["agents.judge.backend=nope"])
    with pytest.raises(ConfigError) as err:
        role_backend_settings(cfg, "judge")
    assert err.value.key == "backend" and "embedded" in err.value.allowed
    cfg = compose_config("generate", ["backend.concurrency=0"])
    with pytest.raises(ConfigError) as err:
        role_backend_settings(cfg, "user")
    assert err.value.key == "backend.concurrency"
    cfg = compose_config("generate", ["agents.preferred.temperature=3"])
    with pytest.raises(ConfigError) as err:
        role_sampling(cfg, "preferred")
    assert err.value.key == "agents.preferred.temperature"


def test_sampling_comes_from_the_role() -> None:
    cfg = compose_config("generate", ["agents.preferred.temperature=0.3", "agents.preferred.max_tokens=17"])
    s = role_sampling(cfg, "preferred")
    assert (s.temperature, s.max_tokens) == (0.3, 17)


def test_make_roles_builds_each_role_with_its_prompt() -> None:
    cfg = compose_config("generate", ["prompts.rejected='REJ {message}'"])
    model = ScriptedModel(lambda r: "ok")
    roles = make_roles(cfg, {r: model for r in ("user", "inducer", "preferred", "rejected", "judge")})
    assert isinstance(roles["user"], UserSimulator) and isinstance(roles["inducer"], Inducer)
    assert isinstance(roles["preferred"], PreferredResponder) and isinstance(roles["judge"], AlignmentJudge)
    assert isinstance(roles["rejected"], RejectedResponder) and roles["rejected"].prompt == "REJ {message}"


async def test_missing_api_key_fails_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALOE_TEST_NO_SUCH_KEY", raising=False)
    cfg = compose_config("generate", ["backend=openai", "backend.api_key_env=ALOE_TEST_NO_SUCH_KEY"])
    with pytest.raises(ConfigError) as err:
        async with open_models(cfg, None, ["user"]):
            pass
    assert err.value.key == "backend.api_key_env" and "ALOE_TEST_NO_SUCH_KEY" in str(err.value)


async def test_roles_with_equal_settings_share_one_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALOE_TEST_KEY", "sk-test")
    cfg = compose_config("generate", ["backend=openai", "backend.api_key_env=ALOE_TEST_KEY",
                                      "agents.judge.model=other"])
    async with open_models(cfg, None, ["user", "inducer", "judge"]) as models:
        assert models["user"] is models["inducer"]
        assert models["judge"] is not models["user"] and models["judge"].model == "other"


def test_check_reachable_names_the_endpoint_that_is_down() -> None:
    import socket

    from aloesim.agents import check_reachable
    from aloesim.agents.gateway import BackendSettings
    from aloesim.core.errors import ServerError

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up = f"http://127.0.0.1:{listening.getsockname()[1]}/v1"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            down = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        check_reachable([BackendSettings(kind="openai", base_url=up), BackendSettings()])  # embedded: not probed
        with pytest.raises(ServerError) as err:
            check_reachable([BackendSettings(kind="openai", base_urls=(up, down))])
    assert err.value.what == down and "cannot connect" in str(err.value)
