"""Which judge asks for logprobs, on which server (orchestration/_judging.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aloesim.agents.gateway import EmbeddedBackend, OpenAIBackend, VLLMBackend
from aloesim.agents.servers import llama_server_command
from aloesim.core import to_settings
from aloesim.core.errors import ConfigError
from aloesim.evaluation import EvaluationSettings, JudgeCheckSettings
from aloesim.orchestration import compose_config
from aloesim.orchestration._judging import judge_backend, judge_server, wants_logprobs


@pytest.mark.parametrize(("settings", "auto"), [
    (EmbeddedBackend(), True),                                                     # managed: we start it
    (EmbeddedBackend(base_url="http://127.0.0.1:8080/v1"), False),                 # someone's llama.cpp server
    (VLLMBackend(model="m"), True),
    (OpenAIBackend(base_url="https://api.openai.com/v1"), True),
    (OpenAIBackend(base_url="http://127.0.0.1:8000/v1"), False),
])
def test_auto_asks_only_where_logprobs_are_known_to_come_back(settings, auto) -> None:
    assert wants_logprobs(EvaluationSettings(judge_logprobs="auto"), settings) is auto
    assert wants_logprobs(EvaluationSettings(judge_logprobs="true"), settings) is True
    assert wants_logprobs(EvaluationSettings(judge_logprobs="false"), settings) is False
    # true/false as YAML or the command line give them (OmegaConf hands a str field the text)
    assert to_settings({"judge_logprobs": True}, EvaluationSettings).judge_logprobs == "true"
    assert wants_logprobs(to_settings({"judge_logprobs": "False"}, EvaluationSettings), settings) is False


def test_the_embedded_judge_server_keeps_logits_and_stays_small() -> None:
    s = judge_server(EmbeddedBackend(n_ctx=4096, servers=3, prompt_cache_mb=256))
    assert s.logits_all is True and s.prompt_cache_mb == 0 and s.n_ctx == 2048 and s.servers == 1
    cfg = compose_config("evaluate", [])
    own, asked = judge_backend(cfg, EvaluationSettings())     # auto on the managed embedded default: its own server
    assert asked is True and own.logits_all is True and own.prompt_cache_mb == 0
    plain, asked = judge_backend(cfg, EvaluationSettings(judge_logprobs="false"))
    assert asked is False and plain.logits_all is False
    argv = llama_server_command(Path("m.gguf"), 8080, logits_all=True)
    assert argv[argv.index("--logits_all") + 1] == "True"
    argv = llama_server_command(Path("m.gguf"), 8080)
    assert argv[argv.index("--logits_all") + 1] == "False"


def test_defaults_match_the_yaml() -> None:
    e = to_settings(compose_config("evaluate", []).evaluation, EvaluationSettings)
    assert e.judge_check == JudgeCheckSettings() and e.judge_check.pairs == 32 and e.judge_check.threshold == 0.75
    assert (e.judge_scoring, e.judge_logprobs) == ("sample", "auto")


@pytest.mark.parametrize(("overrides", "key"), [
    (["evaluation.judge_scoring=mean"], "evaluation.judge_scoring"),
    (["evaluation.judge_logprobs=maybe"], "evaluation.judge_logprobs"),
    (["evaluation.judge_scoring=expected", "evaluation.judge_logprobs=false"], "evaluation.judge_scoring"),
    (["evaluation.judge_check.pairs=1"], "evaluation.judge_check.pairs"),
    (["evaluation.judge_check.threshold=0.5"], "evaluation.judge_check.threshold"),
])
def test_bad_judge_keys_are_one_line(overrides, key) -> None:
    with pytest.raises(ConfigError) as err:
        to_settings(compose_config("evaluate", overrides).evaluation, EvaluationSettings, "evaluation")
    assert key in str(err.value) and "\n" not in str(err.value)


def test_the_demo_can_point_its_judge_elsewhere() -> None:
    from aloesim.orchestration.commands.demo import stages

    plan = stages(compose_config("demo", ["agents.judge.backend=openai", "agents.judge.model=gpt-4o"]))
    evaluate = [overrides for _, command, overrides in plan if command == "evaluate"]
    assert len(evaluate) == 2
    for overrides in evaluate:
        assert {"agents.judge.backend=openai", "agents.judge.model=gpt-4o", "evaluation.judge_check.pairs=8"} <= set(
            overrides)
        compose_config("evaluate", overrides)   # they compose
    plain = stages(compose_config("demo", []))
    assert not any(o.startswith("agents.judge.") for _, _, overrides in plain for o in overrides)
