"""Structured output: the schema goes out as ``response_format`` in each
dialect, a reply that does not validate is retried (with more room), a
valid one comes back parsed, and one that never validates is a
``StructuredOutputError``."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from gateway_fakes import URL, FakeServer, make_backend
from pydantic import BaseModel, Field

from aloesim.agents.gateway import Sampling, response_format
from aloesim.core.errors import LLMError, StructuredOutputError

pytestmark = pytest.mark.anyio

ASK = [{"role": "user", "content": "which is better?"}]


class Verdict(BaseModel):
    choice: Literal["A", "B"]
    confidence: int = Field(ge=1, le=5)


VALID = json.dumps({"choice": "B", "confidence": 4})


async def test_llamacpp_dialect_sends_json_object_with_schema() -> None:
    server = FakeServer([VALID])
    backend = make_backend(server, dialect="llamacpp")
    result = await backend.chat(ASK, role="judge", schema=Verdict)
    await backend.aclose()
    assert server.seen[0].body["response_format"] == {"type": "json_object", "schema": Verdict.model_json_schema()}
    assert result.parsed == Verdict(choice="B", confidence=4)
    assert json.loads(result.text) == {"choice": "B", "confidence": 4}


async def test_openai_dialect_sends_json_schema() -> None:
    server = FakeServer([VALID])
    backend = make_backend(server, dialect="openai")
    result = await backend.chat(ASK, role="judge", schema=Verdict)
    await backend.aclose()
    rf = server.seen[0].body["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["name"] == "Verdict"
    assert rf["json_schema"]["schema"] == Verdict.model_json_schema()
    assert result.parsed == Verdict(choice="B", confidence=4)


async def test_no_schema_no_response_format() -> None:
    server = FakeServer(["plain"])
    backend = make_backend(server)
    result = await backend.chat(ASK, role="user")
    await backend.aclose()
    assert "response_format" not in server.seen[0].body and result.parsed is None


def test_response_format_helper_matches_both_dialects() -> None:
    js = Verdict.model_json_schema()
    assert response_format(Verdict, "llamacpp") == {"type": "json_object", "schema": js}
    assert response_format(Verdict, "openai") == {"type": "json_schema", "json_schema": {"name": "Verdict", "schema": js}}


@pytest.mark.parametrize("bad", [
    '{"choice": "C", "confidence": 4}',       # not an allowed value
    '{"choice": "A", "confidence": 9}',       # out of range
    '{"choice": "A", "confid',                # cut off
    "Sure! Here is my verdict: A",            # not JSON at all
])
async def test_invalid_reply_is_retried_then_valid_one_returned(bad: str) -> None:
    server = FakeServer([bad, VALID])
    backend = make_backend(server)
    result = await backend.chat(ASK, role="judge", schema=Verdict, sampling=Sampling(max_tokens=64))
    await backend.aclose()
    assert server.count == 2 and result.attempts == 2
    assert result.parsed == Verdict(choice="B", confidence=4)
    # a reply that did not validate may have been cut off: the retry gets more room
    assert server.seen[0].body["max_tokens"] == 64 and server.seen[1].body["max_tokens"] == 128


async def test_never_valid_is_structured_output_error() -> None:
    server = FakeServer(default='{"choice": "maybe"}')
    backend = make_backend(server, max_retries=3)
    with pytest.raises(StructuredOutputError) as info:
        await backend.chat(ASK, role="judge", schema=Verdict, sampling=Sampling(max_tokens=50))
    await backend.aclose()
    err = info.value
    assert isinstance(err, LLMError)
    assert server.count == 4 and err.attempts == 4
    assert (err.role, err.endpoint) == ("judge", URL)
    assert "invalid structured output" in err.reason and "\n" not in str(err)
    # room grows up to four times the requested max_tokens, no further
    assert [s.body["max_tokens"] for s in server.seen] == [50, 100, 200, 200]
