"""The persona generator role: prompt filling, reply parsing, the real model."""

from __future__ import annotations

import pytest

from aloesim.agents import PersonaGenerator, split_items
from aloesim.agents.gateway import Sampling
from aloesim.agents.testing import ScriptedModel
from aloesim.core.errors import ConfigError, LLMError
from aloesim.environment.personas import GenerationRequest

PROMPTS = {"profiles": "Write {n} profiles like:\n{examples}\nOne per line.",
           "personalities": "Write {n} personalities like:\n{examples}"}

MESSY = """Sure! Here are 6 user profiles:

1. A 40-year-old baker in Rome who loves opera and has three kids.
2) **Profile 2:** A retired pilot, 66, who restores sailboats in Maine.

- "A nurse in Cebu who sings karaoke every Friday night."
* Profile 4: Teenager who plays chess online and keeps bees.
Profile #5 - A 30-year-old with a dog and a garden plot.
### Profile 6
\u2022 **Personality**: Loud and warm, jokes a lot, hates silence.
Too short.
You should not include any other content beyond personality traits such as these.
A: Yes, that's correct. Thank you very much!
You are an AI designed to help you create stories, poems, and other creative works.
1. A 40-year-old baker in Rome who loves opera and has three kids.
I hope these profiles help with your task!
"""


def test_split_items_cleans_what_small_models_write() -> None:
    assert split_items(MESSY) == [
        "A 40-year-old baker in Rome who loves opera and has three kids.",
        "A retired pilot, 66, who restores sailboats in Maine.",
        "A nurse in Cebu who sings karaoke every Friday night.",
        "Teenager who plays chess online and keeps bees.",
        "A 30-year-old with a dog and a garden plot.",
        "Loud and warm, jokes a lot, hates silence.",
    ]
    assert split_items(MESSY, limit=2) == split_items(MESSY)[:2]
    assert split_items(MESSY, min_words=11) == ["A 40-year-old baker in Rome who loves opera and has three kids."]
    assert split_items("") == [] and split_items("\n\n  \n") == []


def test_split_items_strips_letter_labels_of_items_and_drops_spoken_turns() -> None:
    # SmolLM2-135M, asked for profiles with the paper's prompt, labels them "A:", "B:" (seen in CI)
    text = ("A: 34-year-old nurse with a family of five who takes pride in her work.\n"
            "B. 71-year-old Scottish man who restores clocks and keeps bees.\n"
            "A: Yes, that's correct. Thank you very much!\n"
            "B: Do you have any hobbies you enjoy on weekends?\n")
    assert split_items(text) == ["34-year-old nurse with a family of five who takes pride in her work.",
                                 "71-year-old Scottish man who restores clocks and keeps bees."]


def test_split_items_keeps_plain_lines_as_they_are() -> None:
    text = "Likes jazz, hates mornings, has two cats.\nA 25-year-old (recently moved) who runs 5k daily.\n"
    assert split_items(text) == text.strip().splitlines()


@pytest.mark.anyio
async def test_prompt_examples_seed_and_role() -> None:
    model = ScriptedModel(lambda req: MESSY)
    gen = PersonaGenerator(model, PROMPTS, Sampling(temperature=0.9, max_tokens=77), run_id=5)
    req = GenerationRequest("profile", ("ex one", "ex two"), 3, iteration=4, seed=1234)
    items = await gen(req)
    assert len(items) == 3 and items[0].startswith("A 40-year-old baker")
    sent = model.requests[0]
    assert sent.role == "generator"
    assert sent.messages == [{"role": "user", "content": "Write 3 profiles like:\nex one\nex two\nOne per line."}]
    assert (sent.sampling.seed, sent.sampling.max_tokens, sent.sampling.temperature) == (1234, 77, 0.9)
    assert (sent.context.run_id, sent.context.turn) == (5, 4)
    await gen(GenerationRequest("personality", ("p",), 2, iteration=0, seed=1))
    assert model.requests[1].messages[0]["content"].startswith("Write 2 personalities like:\np")


@pytest.mark.anyio
async def test_model_failures_propagate_as_llm_errors() -> None:
    gen = PersonaGenerator(ScriptedModel(lambda req: RuntimeError("boom")), PROMPTS)
    with pytest.raises(LLMError, match="generator"):
        await gen(GenerationRequest("profile", ("x",), 2, iteration=0, seed=0))


@pytest.mark.parametrize(("prompts", "key"), [
    ({"profiles": "{n} {examples}"}, "prompts.personalities"),
    ({**PROMPTS, "profiles": "{n} {examples} {persona}"}, "prompts.profiles"),
])
def test_bad_prompt_templates_are_config_errors(prompts: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        PersonaGenerator(ScriptedModel(lambda r: ""), prompts)
    assert info.value.key == key


def test_paper_prompts_fill() -> None:
    from importlib import resources

    import yaml

    paper = yaml.safe_load(resources.files("aloesim.conf").joinpath("prompts", "paper.yaml").read_text())
    gen = PersonaGenerator(ScriptedModel(lambda r: ""), paper)
    text = gen.messages(GenerationRequest("profile", ("EXAMPLE A", "EXAMPLE B"), 20, 0, 0))[0]["content"]
    assert "generate 20 different user profiles" in text and "EXAMPLE A\nEXAMPLE B" in text


@pytest.mark.integration
@pytest.mark.anyio
async def test_real_small_model_writes_parseable_items(embedded_url: str) -> None:
    from importlib import resources

    import yaml

    from aloesim.agents.gateway import Backend, BackendSettings
    from aloesim.environment.personas import seed_items

    paper = yaml.safe_load(resources.files("aloesim.conf").joinpath("prompts", "paper.yaml").read_text())
    backend = Backend(BackendSettings(base_url=embedded_url), [embedded_url], cache=False)
    try:
        gen = PersonaGenerator(backend, paper, Sampling(temperature=0.8, max_tokens=100))
        items = await gen(GenerationRequest("profile", tuple(seed_items("profile")[:3]), 5, iteration=0, seed=11))
    finally:
        await backend.aclose()
    assert 1 <= len(items) <= 5
    for item in items:
        assert len(item.split()) >= 5
        assert not item[:3].strip().rstrip(".)").isdigit() and not item.startswith(("-", "*", "\u2022"))
