"""Which judge asks for logprobs, on which server (orchestration/_judging.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aloesim.agents.gateway import BackendSettings
from aloesim.agents.servers import llama_server_command
from aloesim.orchestration._config import compose_config
from aloesim.orchestration._judging import JudgeOptions, judge_options, judge_server, wants_logprobs


@pytest.mark.parametrize(("settings", "auto"), [
    (BackendSettings(kind="embedded"), True),                                         # managed: we start it
    (BackendSettings(kind="embedded", base_url="http://127.0.0.1:8080/v1"), False),    # someone's llama.cpp server
    (BackendSettings(kind="vllm", model="m"), True),
    (BackendSettings(kind="openai", base_url="https://api.openai.com/v1"), True),
    (BackendSettings(kind="openai", base_url="http://127.0.0.1:8000/v1"), False),
])
def test_auto_asks_only_where_logprobs_are_known_to_come_back(settings, auto) -> None:
    assert wants_logprobs(JudgeOptions(logprobs="auto"), settings) is auto
    assert wants_logprobs(JudgeOptions(logprobs=True), settings) is True
    assert wants_logprobs(JudgeOptions(logprobs=False), settings) is False


def test_the_embedded_judge_server_keeps_logits_and_stays_small() -> None:
    s = judge_server(BackendSettings(kind="embedded", n_ctx=4096, servers=3, extra={"prompt_cache_mb": 256}))
    assert s.extra["logits_all"] is True and s.extra["prompt_cache_mb"] == 0 and s.n_ctx == 2048 and s.servers == 1
    argv = llama_server_command(Path("m.gguf"), 8080, logits_all=True)
    assert argv[argv.index("--logits_all") + 1] == "True"
    argv = llama_server_command(Path("m.gguf"), 8080)
    assert argv[argv.index("--logits_all") + 1] == "False"


def test_defaults_match_the_yaml() -> None:
    opts = judge_options(compose_config("evaluate", []))
    assert opts == JudgeOptions() and opts.check.pairs == 32 and opts.check.threshold == 0.75


def test_the_demo_can_point_its_judge_elsewhere() -> None:
    from aloesim.orchestration.commands.demo import stages

    plan = stages(compose_config("demo", ["agents.judge.backend=openai", "agents.judge.model=gpt-4o"]))
    evaluate = [overrides for _, command, overrides in plan if command == "evaluate"]
    assert len(evaluate) == 2
    for overrides in evaluate:
        assert {"agents.judge.backend=openai", "agents.judge.model=gpt-4o", "evaluation.judge_check.pairs=16"} <= set(
            overrides)
        compose_config("evaluate", overrides)   # they compose
    plain = stages(compose_config("demo", []))
    assert not any(o.startswith("agents.judge.") for _, _, overrides in plain for o in overrides)
