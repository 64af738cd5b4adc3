"""``prompts=paper_verbatim``: the roles send Appendix B's B.2.2 and B.3 as
printed and read the plain-text replies (``prompts.format=text``); the
default ``prompts=paper`` keeps the JSON schemas. Unit tests with a scripted
model, and one integration test against the real embedded server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from aloesim.agents import (
    InducerOutput,
    InducerText,
    JudgeScore,
    JudgeText,
    PreferenceText,
    PreferenceVerdict,
    make_roles,
)
from aloesim.agents._plain_text import read_persona_text, read_score_text
from aloesim.agents.gateway import Backend, BackendSettings, StoreRecorder
from aloesim.agents.testing import ScriptedModel, ScriptedRequest
from aloesim.core.errors import StructuredOutputError
from aloesim.environment import InferredPersona, Persona, PreferenceCheck
from aloesim.environment.store import Store
from aloesim.orchestration import check_config, compose_config

pytestmark = pytest.mark.anyio

PERSONA = Persona(1, "He is a 33-year-old engineer who brews beer.", "He is calm and strategic.")
CHAT = [{"role": "user", "content": "Just finished brewing an IPA in my garage!"}]

# Appendix B as printed (whitespace aside): what the verbatim prompts must say, and the JSON
# instructions they must not
B22_FORMAT = ("Provide your findings in the following format without additional analysis: "
              "Profile: [inferred user profile details] Personalities: [inferred user personality traits]")
B3_END = "Please only output the score from 1-5 without giving any explanations."


def _flat(text: str) -> str:
    return " ".join(text.split())


def _roles(prompts: str, model: ScriptedModel) -> dict:
    cfg = compose_config("generate", [f"prompts={prompts}"])
    return make_roles(cfg, {"inducer": model, "judge": model, "preference_judge": model})


def test_the_verbatim_prompts_are_appendix_b_and_the_default_asks_for_json() -> None:
    verbatim = check_config(compose_config("generate", ["prompts=paper_verbatim"])).prompts
    default = check_config(compose_config("generate", [])).prompts
    assert verbatim.format == "text" and default.format == "json"
    assert B22_FORMAT in _flat(verbatim.inducer) and "JSON" not in verbatim.inducer
    assert _flat(verbatim.judge).endswith(B3_END) and "JSON" not in verbatim.judge
    assert "JSON" in default.inducer and "JSON" in default.judge and B22_FORMAT not in _flat(default.inducer)
    # every other prompt is the same text in both variants
    for key in ("profiles", "personalities", "user", "preferred", "rejected"):
        assert getattr(verbatim, key) == getattr(default, key)


async def test_verbatim_inducer_reads_plain_text() -> None:
    model = ScriptedModel(lambda r: "**Profile:** He/She brews beer at home.\n**Personalities:** None")
    inferred = await _roles("paper_verbatim", model)["inducer"](PERSONA, CHAT)
    assert inferred == InferredPersona("He/She brews beer at home.", None)
    req = model.requests[0]
    assert req.schema is InducerText and B22_FORMAT in _flat(req.messages[0]["content"])


async def test_verbatim_judge_and_preference_check_read_plain_text() -> None:
    def reply(req: ScriptedRequest) -> str:
        if req.role == "judge":
            return "I'd give it a 4 out of 5."
        content = req.messages[-1]["content"]
        return "A" if content.index("PREF") < content.index("REJ") else "Response B."

    model = ScriptedModel(reply)
    roles = _roles("paper_verbatim", model)
    assert await roles["judge"](PERSONA, "hi", "hello there") == 4
    verdict = await roles["preference_judge"](PERSONA, CHAT, "hi", "PREF reply", "REJ reply")
    assert verdict == PreferenceCheck(True, True)
    assert {r.schema for r in model.requests} == {JudgeText, PreferenceText}


async def test_an_unreadable_verbatim_reply_is_a_structured_output_error() -> None:
    model = ScriptedModel(lambda r: "It is quite well tailored.")
    with pytest.raises(StructuredOutputError, match="JudgeText"):
        await _roles("paper_verbatim", model)["judge"](PERSONA, "hi", "hello")


async def test_the_default_prompts_keep_the_json_schemas() -> None:
    def reply(req: ScriptedRequest) -> dict:
        return {"score": 3} if req.role == "judge" else {"profile": "He/She brews beer.", "personalities": None}

    model = ScriptedModel(reply)
    roles = _roles("paper", model)
    assert await roles["judge"](PERSONA, "hi", "hello") == 3
    assert await roles["inducer"](PERSONA, CHAT) == InferredPersona("He/She brews beer.", None)
    assert [r.schema for r in model.requests] == [JudgeScore, InducerOutput]
    assert PreferenceVerdict not in {r.schema for r in model.requests}


@pytest.mark.integration
async def test_verbatim_roles_on_the_real_embedded_model(embedded_url: str, tmp_path: Path) -> None:
    """B.3 and B.2.2 as printed, sent to SmolLM2-135M as plain-text calls: the judge's
    reply is read as a score 1-5, the inducer's as a persona, and what was stored is
    the raw reply with no JSON schema in the request."""
    cfg = compose_config("generate", ["prompts=paper_verbatim", "agents.inducer.max_tokens=300"])
    async with Store.open(tmp_path / "v.db") as store:
        backend = Backend(BackendSettings(kind="embedded", base_url=embedded_url), [embedded_url],
                          recorder=StoreRecorder(store), cache=False)
        roles = make_roles(cfg, {"inducer": backend, "judge": backend})
        score = await roles["judge"](PERSONA, CHAT[0]["content"], "Nice! Which hops did you use?", seed=1)
        inferred = await roles["inducer"](PERSONA, CHAT, seed=1)
        await backend.aclose()
    assert score in (1, 2, 3, 4, 5) and isinstance(inferred, InferredPersona)
    with sqlite3.connect(tmp_path / "v.db") as conn:
        rows = conn.execute("SELECT role, request, response FROM llm_calls WHERE error IS NULL ORDER BY id").fetchall()
    judge_row = next(r for r in rows if r[0] == "judge")
    inducer_row = next(r for r in rows if r[0] == "inducer")
    assert "schema" not in json.loads(judge_row[1]) and "schema" not in json.loads(inducer_row[1])
    assert read_score_text(judge_row[2]) == score  # the stored text is the raw reply the score was read from
    assert InferredPersona(*read_persona_text(inducer_row[2])) == inferred
